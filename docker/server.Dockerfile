# A simulated server for the lab: a Debian userland with a desktop on VNC (Xvfb, twm, xterm,
# x11vnc on 5901) and a serial getty on the container's TTY. The emulator's docker backend
# powers it by starting and stopping the container and attaches to that TTY (/dev/console in
# here) as the server's serial port, so `ipmitool sol activate` reaches this getty.
#
# Offline-friendly: only Debian packages. BASE_IMAGE lets CI use a debootstrap-imported base.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
# one layer, no recommends: the slowest step, cached until this list changes
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        xvfb x11vnc twm xterm x11-xserver-utils procps \
 && rm -rf /var/lib/apt/lists/*

# the OS user of the simulated server (its console and desktop login); a lab default, not a BMC
# credential: override at build time (--build-arg SERVER_PASSWORD=...)
ARG SERVER_USER=lab
ARG SERVER_PASSWORD=lab
RUN useradd --create-home --shell /bin/bash "$SERVER_USER" \
 && echo "$SERVER_USER:$SERVER_PASSWORD" | chpasswd

COPY docker/server-init.sh /usr/local/sbin/server-init
ENV DISPLAY=:1 SERVER_USER=${SERVER_USER}
EXPOSE 5901
# healthy = the desktop is served (x11vnc answers) and the getty holds the console
HEALTHCHECK --interval=2s --timeout=2s --start-period=20s --retries=3 \
    CMD bash -c '</dev/tcp/127.0.0.1/5901 && pgrep -x agetty >/dev/null'
# docker stop (ACPI soft-off): the init traps SIGTERM and stops everything at once
STOPSIGNAL SIGTERM
CMD ["/usr/local/sbin/server-init"]
