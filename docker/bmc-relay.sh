#!/bin/sh
# An address relay: gives one emulated BMC the host name and standard ports of the stack this
# lab replaces (dev-virtualbmc-01:623/udp, dev-redfish-01:8000) by forwarding them to the node's
# ports on the emulator. One socat per protocol; UDP is forwarded per client (fork), so each
# IPMI session keeps its own path back; an idle one ends after 5 minutes.
# SOL cannot pass a relay: Activate Payload names the node's own port (6230+i), which
# ipmitool refuses when it dialed 623; use TARGET:6230+i for SOL (as agent-config writes).
#   bmc-lab-relay TARGET NODE_INDEX      (IPMI: first port of $BMC_IPMI_PORTS + NODE_INDEX,
#                                          Redfish: 8000 + NODE_INDEX)
set -eu
target=$1 index=$2
ports=${BMC_IPMI_PORTS:-6230-6232}
ipmi_port=$(( ${ports%%-*} + index )) redfish_port=$(( 8000 + index ))
socat -T 300 UDP4-LISTEN:623,fork,reuseaddr "UDP4:$target:$ipmi_port" &
socat TCP4-LISTEN:8000,fork,reuseaddr "TCP4:$target:$redfish_port" &
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
wait
