#!/usr/bin/env python3
"""Drive an interactive program through a pseudo-terminal (for the specs).

usage: ptyrun.py [--timeout S] -- command [args...]

Keystrokes come on standard input.  They are sent in groups: a line
(through its newline), a single control character (Ctrl-C, Ctrl-D), or
the text of an unfinished line (then the driver waits for its echo).
A line "#wait-for TEXT" is not sent: the driver waits until TEXT has
appeared in the output (for output of background work between prompts).
A line "#nowait" makes the driver send the next group without waiting for
a prompt after it (for code that runs until interrupted).
After each group the driver waits until the program shows a prompt again
("> " or ">> " at the end of its output), exits, or the timeout passes.
Everything the program wrote is then copied to standard output, and the
driver exits with the program's exit status (124 on timeout).
"""
import os
import pty
import re
import select
import signal
import sys
import time

PROMPT = re.compile(rb">>? $")


def main():
    args = sys.argv[1:]
    timeout = 10.0
    if args[:1] == ["--timeout"]:
        timeout = float(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    keys = sys.stdin.buffer.read()
    groups = re.findall(rb"[^\x00-\x1f]*\n|[\x00-\x1f]|[^\x00-\x1f]+", keys)

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(args[0], args)

    out = bytearray()
    status = None

    def pump(until_prompt, quiet=None, after_newline=False):
        nonlocal status
        deadline = time.time() + (quiet * 10 if quiet else timeout)
        last = time.time()
        mark = len(out)
        # After a line was sent, its echo may itself end in "> " ("P> ",
        # "n > 0") while it arrives: the prompt counts only after the echo
        # of its newline.
        begin = None if after_newline else mark
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    return True
                out.extend(data)
                last = time.time()
                if begin is None:
                    nl = out.find(b"\n", mark)
                    if nl >= 0:
                        begin = nl + 1
                if until_prompt and begin is not None and PROMPT.search(bytes(out[begin:])):
                    return True
            else:
                if quiet and time.time() - last > quiet:
                    return True
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
                    # drain what is left
                    while select.select([fd], [], [], 0.05)[0]:
                        try:
                            data = os.read(fd, 4096)
                        except OSError:
                            break
                        if not data:
                            break
                        out.extend(data)
                    return True
        return False

    ok = pump(True)  # the banner and the first prompt
    nowait = False
    for g in groups:
        if not ok or status is not None:
            break
        if g == b"#nowait\n":
            nowait = True
            continue
        if g.startswith(b"#wait-for "):
            want = g[len(b"#wait-for "):].rstrip(b"\n")
            deadline = time.time() + timeout
            while want not in out and time.time() < deadline and status is None:
                pump(False, 0.1)
            continue
        os.write(fd, g)
        # A partial line shows no new prompt: wait for its echo to settle.
        partial = not g.endswith(b"\n") and len(g) > 1 or g in (b"\x1b", b"\t") or nowait
        nowait = False
        ok = pump(not partial, 0.3 if partial else None, g.endswith(b"\n"))
    # Wait for the program to end (it should, after the last keys).
    deadline = time.time() + timeout
    while status is None and time.time() < deadline:
        pump(False, 0.05)
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    sys.stdout.buffer.write(bytes(out).replace(b"\r\n", b"\n"))
    sys.stdout.flush()
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit(124)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
