# The BMC emulator for the lab: one process serving every server's IPMI and Redfish, driving the
# server containers through the Docker socket (the only thing mounted). It runs as the
# unprivileged user `bmc`; the entrypoint starts as root only to join the group that owns the
# mounted socket (its gid differs between hosts) and then drops every privilege.
# The same image runs the lab's address relays (`bmc-lab-relay`: socat).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv socat ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV PATH=/opt/bmc-emulator/bin:$PATH \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/bmc-emulator

# Behind a TLS-intercepting proxy (some CI networks), pip needs its CA: EXTRA_CA_CERTS is PEM
# text (public certificates, not secrets) trusted by this pip step only, never at run time.
ARG EXTRA_CA_CERTS=""
# dependencies first, from pyproject.toml alone (an empty package), so a code change reuses
# this layer; the second install adds the code offline, without touching them
WORKDIR /src
COPY pyproject.toml ./
RUN touch README.md \
 && bundle=/etc/ssl/certs/ca-certificates.crt \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
        bundle=/tmp/pip-ca.pem; \
        { cat /etc/ssl/certs/ca-certificates.crt; printf '%s\n' "$EXTRA_CA_CERTS"; } >$bundle; \
    fi \
 && PIP_CERT=$bundle pip install wheel '.[docker]' \
 && pip uninstall -y bmc-emulator && rm -f /tmp/pip-ca.pem
COPY README.md ./
COPY bmc bmc
COPY ipmi ipmi
COPY redfish redfish
COPY backends backends
RUN pip install --no-deps --no-build-isolation --no-index . && rm -rf /src

RUN useradd --system --home-dir /var/lib/bmc-emulator --shell /usr/sbin/nologin bmc \
 && mkdir -p /var/lib/bmc-emulator /var/lib/bmc-agent /etc/bmc-emulator \
 && chown bmc:bmc /var/lib/bmc-emulator /var/lib/bmc-agent
COPY docker/bmc-entrypoint.sh /usr/local/bin/bmc-lab-entrypoint
COPY docker/bmc-relay.sh /usr/local/bin/bmc-lab-relay
COPY docker/bmc-healthcheck.py /usr/local/bin/bmc-lab-healthcheck
WORKDIR /var/lib/bmc-emulator
ENV BMC_EMULATOR_CONFIG=/etc/bmc-emulator/config.yaml
EXPOSE 623/udp 6230-6232/udp 8000-8002
# healthy = every node of the config answers an IPMI probe and GET /redfish/v1
HEALTHCHECK --interval=2s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/bmc-lab-healthcheck"]
ENTRYPOINT ["/usr/local/bin/bmc-lab-entrypoint"]
CMD ["bmc-emulator", "serve"]
