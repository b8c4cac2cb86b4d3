# SPDX-License-Identifier: LGPL-2.1-or-later
"""The control socket: no request line is longer than 64 KiB."""

import json
import socket


def connect(d, first=b""):
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)  # blocking: waits for room in the listen backlog
    s.settimeout(30)
    if first:
        s.sendall(first)
    return s


def test_every_line_is_bounded(env, daemons):
    d = daemons()

    def status_line(size):
        head = b'{"command": "status", "pad": "'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    # Exactly 64 KiB is a request.
    s = connect(d, status_line(64 * 1024) + b"\n")
    assert json.loads(s.makefile("rb").readline())["ok"] is True
    s.close()
    # 66 KiB, newline and all in one write: refused, and the connection
    # closes, whatever the daemon's reads made of it.
    s = connect(d)
    try:
        s.sendall(status_line(66 * 1024) + b"\n")
    except BrokenPipeError:
        pass
    f = s.makefile("rb")
    reply = json.loads(f.readline())
    assert reply["ok"] is False and "longer than 65536 bytes" in reply["error"], reply
    assert f.readline() == b""
    s.close()
    assert d.ctl("status", check=0).returncode == 0
