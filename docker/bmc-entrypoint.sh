#!/bin/sh
# Drop to the `bmc` user (keeping the group of the mounted Docker socket), write the agent
# registration if asked (BMC_AGENT_FILE), then run the command: `bmc-emulator serve` reads
# $BMC_EMULATOR_CONFIG.
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
    if [ -n "${BMC_AGENT_FILE:-}" ]; then
        # the local agent's static registration, from the same config (see compose/core.yml)
        bmc-emulator agent-config --config "$BMC_EMULATOR_CONFIG" >"$BMC_AGENT_FILE.tmp"
        mv "$BMC_AGENT_FILE.tmp" "$BMC_AGENT_FILE"
    fi
    exec bmc-emulator serve --config "$BMC_EMULATOR_CONFIG" "$@"
fi
exec "$@"
