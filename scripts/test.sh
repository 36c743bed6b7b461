#!/usr/bin/env bash
# The project's test command: install what the suite needs, then lint and run every test.
#
# Works on a fresh Debian 12 machine as root and in CI (CI=true, no stdin): nothing asks a
# question. Arguments go to pytest instead of the default `tests`, e.g.
#   bash scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore  # root is the normal case here (CI, containers)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

apt_updated=""
apt_install() {
    echo "test.sh: apt-get install $*" >&2
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -q </dev/null
        apt_updated=1
    fi
    as_root apt-get install -y -q --no-install-recommends "$@" </dev/null
}

# -- system packages: the IPMI clients the end-to-end tests drive, the real things behind the
# backends (dockerd, libvirtd with QEMU, sshd, ipmi_sim), the lab's tools, and Python itself
missing=()
have ipmitool || missing+=(ipmitool)
have ipmipower || missing+=(freeipmi-tools)
have ipmi_sim || missing+=(openipmi)
have dockerd || missing+=(docker.io)
have docker-compose || missing+=(docker-compose)
have debootstrap || missing+=(debootstrap)
have libvirtd || missing+=(libvirt-daemon-system)
have qemu-system-x86_64 || missing+=(qemu-system-x86)
have sshd || missing+=(openssh-server)
have chromium || missing+=(chromium)
have ip || missing+=(iproute2)
have curl || missing+=(curl)  # the HTTPS tests use curl as a client, as users do
have pkg-config || missing+=(pkg-config)
[ -e /usr/include/libvirt/libvirt.h ] || missing+=(libvirt-dev)  # to build libvirt-python
have python3 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# -- the Python environment -------------------------------------------------------------------
python=${PYTHON:-python3}
# Debian's own Python refuses `pip install` (PEP 668, "externally managed"): use a venv then.
# Any other Python (a venv, pyenv, the python:3.11 image) gets the packages directly.
if "$python" -c '
import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)'; then
    if [ ! -x .venv/bin/python ]; then
        "$python" -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
        "$python" -m venv .venv
    fi
    python=.venv/bin/python
fi
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "bmc-emulator needs Python 3.11+"'
"$python" -m pip install -q -e '.[test]' </dev/null

# -- the DMTF Redfish validators, in a venv of their own: they depend on DMTF's `redfish`
# library, whose top-level package `redfish` would shadow ours in a shared environment
conformance=.venv-conformance
if [ ! -x "$conformance/bin/rf_service_validator" ]; then
    "$python" -m venv "$conformance" </dev/null || { apt_install python3-venv; "$python" -m venv "$conformance"; }
fi
"$conformance/bin/python" -m pip install -q -r tests/conformance-requirements.txt </dev/null
export BMC_CONFORMANCE_BIN="$PWD/$conformance/bin"

# -- lint, then the tests ---------------------------------------------------------------------
"$python" -m ruff check .
if [ $# -gt 0 ]; then
    "$python" -m pytest -q "$@"
else
    "$python" -m pytest -q --durations=15 tests
fi
