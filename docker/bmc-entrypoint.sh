#!/bin/sh
# Drop to the `bmc` user (keeping the group of the mounted Docker socket), write the agent
# registration if asked (BMC_AGENT_FILE), then run the command: `bmc-emulator serve` reads
# $BMC_EMULATOR_CONFIG.
#
# BMC_IPMI_PORTS (e.g. 6230-6232) moves the nodes' IPMI ports: node i listens on FIRST+i.
# Compose publishes them on the same host ports, because IPMI's Activate Payload tells the
# client which UDP port to use for SOL, and ipmitool refuses a port other than the one it
# dialed: so the port inside must equal the port the client sees.
set -eu

if [ "$(id -u)" = 0 ]; then
    groups=bmc
    sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
    sock=${sock#unix://}
    if [ -S "$sock" ]; then
        groups=$(stat -c %g "$sock")
    fi
    exec setpriv --reuid=bmc --regid=bmc --groups="$groups" --inh-caps=-all \
        --bounding-set=-all --no-new-privs -- env HOME=/var/lib/bmc-emulator "$0" "$@"
fi

if [ "${1:-}" = bmc-emulator ] && [ "${2:-}" = serve ]; then
    shift 2
    set -- --config "$BMC_EMULATOR_CONFIG" "$@"
    if [ -n "${BMC_IPMI_PORTS:-}" ]; then
        set -- "$@" --ipmi-port-base "${BMC_IPMI_PORTS%%-*}"
        export BMC_AGENT_IPMI_PORT_BASE="${BMC_AGENT_IPMI_PORT_BASE:-${BMC_IPMI_PORTS%%-*}}"
    fi
    if [ -n "${BMC_AGENT_FILE:-}" ]; then
        # the local agent's static registration, from the same config (see compose/core.yml)
        bmc-emulator agent-config --config "$BMC_EMULATOR_CONFIG" >"$BMC_AGENT_FILE.tmp"
        mv "$BMC_AGENT_FILE.tmp" "$BMC_AGENT_FILE"
    fi
    exec bmc-emulator serve "$@"
fi
exec "$@"
