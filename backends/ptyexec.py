"""Exec a command with the terminal on its stdin as the controlling terminal.

    python ptyexec.py COMMAND [ARG...]

The `process` backend starts every server through this (as a new session, stdin/stdout/stderr
on the node's pty) so that the pty is the program's controlling terminal, as a serial console
is for a getty: Ctrl-C typed on the console reaches the foreground program, and the program
gets SIGHUP if the emulator dies without stopping it. A separate exec step instead of
`preexec_fn`, which the subprocess docs call unsafe in a threaded program (the emulator is).
Stdlib only; run as a plain script.
"""

import contextlib
import fcntl
import os
import sys
import termios


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: ptyexec.py COMMAND [ARG...]")
    # not a terminal, or not a session leader: run without one rather than fail
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as exc:
        sys.stderr.write(f"{sys.argv[1]}: {exc.strerror}\r\n")
        os._exit(127)


if __name__ == "__main__":
    main()
