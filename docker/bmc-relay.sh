#!/bin/sh
# An address relay: gives one emulated BMC the host name and standard ports of the stack this
# lab replaces (dev-virtualbmc-01:623/udp, dev-redfish-01:8000) by forwarding them to the node's
# ports on the emulator. One socat per protocol; UDP is forwarded per client (fork), so each
# IPMI session, SOL included, keeps its own path back; an idle one ends after 5 minutes.
#   bmc-lab-relay TARGET IPMI_PORT REDFISH_PORT
set -eu
target=$1 ipmi_port=$2 redfish_port=$3
socat -T 300 UDP4-LISTEN:623,fork,reuseaddr "UDP4:$target:$ipmi_port" &
socat TCP4-LISTEN:8000,fork,reuseaddr "TCP4:$target:$redfish_port" &
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
wait
