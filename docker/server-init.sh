#!/bin/bash
# PID 1 of a simulated server: the desktop in the background, a getty on the console in front.
# SIGTERM (power button / docker stop) ends everything at once, like an ACPI shutdown.
set -u

# The container runtime makes the TTY the controlling terminal of PID 1's session, and then
# no getty can make it its own (TIOCSCTTY would need CAP_SYS_ADMIN) and `login` refuses to
# run. So PID 1 gives it up first (TIOCNOTTY, by perl-base, which every Debian has) and
# re-executes itself; each getty below then takes the console in a session of its own.
if [ "${1:-}" != --no-ctty ]; then
    exec perl -e '$SIG{HUP} = "IGNORE"; if (open(my $tty, "+<", "/dev/tty")) {
        ioctl($tty, 0x5422, 0); }  # TIOCNOTTY
        exec @ARGV or die "exec: $!"' -- "$0" --no-ctty
fi

children() { jobs -p; }
shutdown() {
    echo "$(hostname): shutting down" >/dev/console 2>/dev/null
    kill -TERM $(children) 2>/dev/null
    exit 0
}
trap shutdown TERM INT

echo "$(hostname): booting (serial console on /dev/console)"

# -- the desktop: Xvfb on :1 (-noreset: keep the background when a client leaves), a
# background colour, a window manager, a terminal, x11vnc on 5901 ---------------------------
# a power cut (docker kill) leaves X's lock and socket behind in the container: a new Xvfb
# would refuse display :1 ("server already active")
rm -f /tmp/.X1-lock /tmp/.X11-unix/X1
Xvfb :1 -screen 0 1024x768x24 -nolisten tcp -noreset >/tmp/xvfb.log 2>&1 &
for _ in $(seq 1 100); do                      # at most 10 s for X to take clients
    xsetroot -solid '#23527c' 2>/dev/null && break   # (its socket can exist before that)
    sleep 0.1
done
xhost "+si:localuser:${SERVER_USER}" >/dev/null
twm >/tmp/twm.log 2>&1 &
runuser -u "$SERVER_USER" -- xterm -geometry 90x24+60+60 -T "$(hostname)" \
    -bg '#101820' -fg '#e0e0e0' -e bash -l >/dev/null 2>&1 &
x11vnc -display :1 -rfbport 5901 -forever -shared -nopw -quiet -noxdamage \
    -desktop "$(hostname)" >/tmp/x11vnc.log 2>&1 &

# -- the serial console: a getty on the container's TTY, restarted after each logout ---------
while true; do
    setsid agetty --noclear --local-line 115200 console vt100 &
    wait $!
done
