# noVNC for the lab's desktops: Debian's novnc + websockify, one websockify per server on its
# own port (6080, 6081, 6082 -> server-01..03:5901), as the stack this lab replaces published
# them; see compose/README.md for why ports rather than one port with a token file.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends novnc websockify python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin novnc
COPY docker/novnc-start.sh /usr/local/bin/novnc-start
USER novnc
EXPOSE 6080-6082
# healthy = every websockify listed in NOVNC_TARGETS serves the noVNC page
HEALTHCHECK --interval=2s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/novnc-start", "--check"]
# NOVNC_TARGETS: "PORT=HOST:VNCPORT ..." (set by the Compose file)
CMD ["/usr/local/bin/novnc-start"]
