# SPDX-License-Identifier: LGPL-2.1-or-later
"""The control socket cannot be locked: idle and half-sent connections are
closed after control_idle_timeout_s or when a new client needs the slot,
root always gets in, and no request line is longer than 64 KiB."""

import json
import os
import socket
import subprocess
import sys
import time

from conftest import VMD

# Opens N connections as an unprivileged member of the control group, sends
# half a request on each, says so, and holds them until stdin closes.
HOLDER = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(b'{"comm')
    held.append(s)
print("held", flush=True)
sys.stdin.read()
"""


def connect(d, first=b""):
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)  # blocking: waits for room in the listen backlog
    s.settimeout(30)
    if first:
        s.sendall(first)
    return s


def closed_by_daemon(s, wait=0.0):
    """True once the daemon has closed s (EOF, after any replies)."""
    s.settimeout(wait or 0.001)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
            s.settimeout(wait or 0.001)
    except (TimeoutError, BlockingIOError):
        return False
    except ConnectionResetError:
        return True


def test_idle_clients_do_not_lock_out_root(env, daemons):
    env.write_settings(control_group="nogroup")
    d = daemons()
    # More idle root connections than there are slots: each new one closes
    # the longest idle one instead of being refused.
    socks = [connect(d, b'{"comm') for _ in range(70)]
    assert d.ctl("status", check=0).returncode == 0
    assert all(closed_by_daemon(s, 5) for s in socks[:7])
    assert not any(closed_by_daemon(s) for s in socks[-10:])
    for s in socks:
        s.close()
    # 64 idle connections of an unprivileged group member: root still gets
    # in, through the reserve or by closing the oldest of them.
    os.chmod(env.root, 0o711)
    os.chmod(os.path.dirname(d.sock), 0o711)
    holder = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-c", HOLDER, d.sock, "64"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        for _ in range(3):
            assert d.ctl("status", check=0).returncode == 0
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert d.proc.poll() is None


def test_idle_timeout_spares_what_is_in_progress(env, daemons):
    env.write_settings(control_idle_timeout_s=1)
    d = daemons()
    d.define("quiet", autostart=False)
    d.ctl("reload", check=0)
    half = connect(d, b'{"command": "sta')
    silent = connect(d)
    follower = connect(d, b'{"command": "logs", "name": "quiet", "follow": true}\n')
    assert json.loads(follower.makefile("rb").readline())["ok"] is True
    # A start outlives the timeout many times over under TCG: waiting for
    # its answer is not idle.
    t0 = time.time()
    d.ctl("start", "quiet", check=0)
    assert time.time() - t0 > 2
    # A client that keeps asking stays.
    busy = connect(d)
    replies = busy.makefile("rb")
    for i in range(6):
        busy.sendall(b'{"command": "status", "id": %d}\n' % i)
        assert json.loads(replies.readline())["id"] == i
        time.sleep(0.5)
    assert closed_by_daemon(half) and closed_by_daemon(silent)
    assert not closed_by_daemon(busy)
    assert not closed_by_daemon(follower)
    follower.sendall(b'{"command": "status", "name": "quiet", "id": 7}\n')
    assert not closed_by_daemon(follower, 2)
    # ...and the CLI's follower too.
    f = subprocess.Popen([VMD, "-c", env.config, "logs", "quiet", "-f"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert f.poll() is None
    finally:
        f.terminate()
        f.wait()
    for s in (half, silent, follower, busy):
        s.close()
    d.ctl("stop", "quiet", check=0)


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


def test_a_fifo_as_a_vm_log_blocks_nothing(env, daemons):
    # Someone put a FIFO where the VM's log goes: opening it would wait for
    # a reader forever (the start) or a writer (vmd logs).
    d = daemons()
    log_dir = env.settings["log_dir"]
    os.makedirs(log_dir, exist_ok=True)
    fifo = os.path.join(log_dir, "f.log")
    os.mkfifo(fifo)
    d.define("f")
    d.ctl("reload", check=0, timeout=20)
    d.wait_for(lambda: f"f: {fifo}: not a regular file" in d.output(), "the start to fail")
    p = d.ctl("logs", "f", timeout=20)
    assert p.returncode != 0 and f"{fifo}: not a regular file" in p.stderr, p
    assert "f" in d.status()
    # Once it is a file again, the VM starts.
    os.unlink(fifo)
    d.ctl("start", "f", check=0)
    d.wait_state("f", "running", ready=True)
    assert os.path.isfile(fifo)
