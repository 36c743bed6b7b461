#!/bin/sh
# One websockify (serving the noVNC page too) per "PORT=HOST:VNCPORT" word of $NOVNC_TARGETS.
#   novnc-start            run them all (until SIGTERM)
#   novnc-start --check    exit 0 if every PORT serves vnc.html (the health check)
set -eu
: "${NOVNC_TARGETS:?set NOVNC_TARGETS, e.g. 6080=server-01:5901}"

if [ "${1:-}" = --check ]; then
    for target in $NOVNC_TARGETS; do
        python3 -c 'import sys, urllib.request as u
u.urlopen("http://127.0.0.1:%s/vnc.html" % sys.argv[1], timeout=2).read(1)' "${target%%=*}"
    done
    exit 0
fi

for target in $NOVNC_TARGETS; do
    websockify --web /usr/share/novnc "${target%%=*}" "${target#*=}" &
done
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
wait
