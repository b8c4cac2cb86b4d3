# SPDX-License-Identifier: LGPL-2.1-or-later
"""The serial console (vmd console, vmd run in a terminal) and the
per-definition timeouts."""
import os
import time


def test_per_vm_ready_timeout_wins_over_the_host(env, daemons):
    # The host waits 120 s for READY=1; this VM only 1 s, less than a
    # TCG boot takes.
    env.write_settings(start_limit_unready=1)
    d = daemons()
    d.define("hasty", ready_timeout_s=1, restart="never")
    t0 = time.time()
    d.ctl("reload", check=0)
    st = d.wait_state("hasty", "stopped", timeout=60)
    assert time.time() - t0 < 30
    assert "no READY=1 from the guest within 1 s" in st["last_exit"], st


def test_per_vm_stop_timeout_wins_over_the_host(env, daemons):
    # The host grants 20 s of ACPI grace; this VM 1 s.
    d = daemons()
    d.define("deaf", stop_timeout_s=1)
    d.ctl("reload", check=0)
    d.wait_state("deaf", "running", ready=True)
    # Deaf to the power button from now on.
    d.ctl("exec", "deaf", "--", "rm", "/etc/acpi/PWRF/00000080", check=0)
    t0 = time.time()
    d.ctl("stop", "deaf", check=0)
    assert time.time() - t0 < 15
    assert "deaf: the guest did not power off within 1 s" in d.output()


class Pty:
    """A command on a pseudo-terminal of its own, as a user at a terminal
    runs it: stdin, stdout and stderr are the terminal."""

    def __init__(self, argv):
        import pty
        import subprocess
        import termios
        self.master, self.slave = pty.openpty()
        self.mode = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True)
        self.seen = b""

    def expect(self, text, timeout=60):
        import select
        end = time.time() + timeout
        data = text.encode() if isinstance(text, str) else text
        while data not in self.seen:
            left = end - time.time()
            assert left > 0, f"{text!r} not seen; got {self.seen[-2000:]!r}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    assert False, f"{text!r} not seen before EOF; got {self.seen[-2000:]!r}"
        return self.seen

    def type(self, text):
        os.write(self.master, text.encode() if isinstance(text, str) else text)

    def wait(self, timeout=30):
        rc = self.proc.wait(timeout=timeout)
        # What it printed last.
        import select
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        return rc

    def mode_restored(self):
        import termios
        return termios.tcgetattr(self.slave) == self.mode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def running(daemons, name):
    """A daemon with one VM, up and ready: the daemon and its status."""
    d = daemons()
    d.define(name)
    d.ctl("reload", check=0)
    return d, d.wait_state(name, "running", ready=True)


def console(env, *args):
    from conftest import VMD
    return [VMD, "-c", env.config, "console", *args]


def test_console_at_a_terminal_detach_and_backlog(env, daemons):
    d, _ = running(daemons, "tty")
    t = Pty(console(env, "tty"))
    try:
        t.expect("connected to tty's console; ^] detaches")
        # The backlog: the boot is on screen at once.
        t.expect("built-in shell")
        t.type("echo typed-$((6*7))\r")
        t.expect("typed-42")
        t.type(b"\x1d")
        assert t.wait() == 0
        assert b"detached from tty's console" in t.seen
        assert t.mode_restored()
    finally:
        t.close()
    assert d.status("tty")["tty"]["state"] == "running"
    # Again: the backlog holds what was typed last time.
    t = Pty(console(env, "tty", "--escape", "^A"))
    try:
        t.expect("^A detaches")
        t.expect("typed-42")
        t.type(b"\x01")
        assert t.wait() == 0
        assert t.mode_restored()
    finally:
        t.close()


def test_console_scripted_without_a_terminal(env, daemons):
    import subprocess
    d, _ = running(daemons, "script")
    p = subprocess.run(console(env, "script"), input="echo piped-$((2+3))\n", capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p
    assert "piped-5" in p.stdout
    assert "connected" not in p.stderr
    # A daemon that adopts the VM starts its backlog from the VM's log.
    pid = d.status("script")["script"]["pid"]
    d.kill()
    d2 = daemons()
    assert d2.status("script")["script"]["pid"] == pid
    p = subprocess.run(console(env, "script"), input="", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "piped-5" in p.stdout, p


def test_one_writer_force_and_read_only(env, daemons):
    import subprocess
    d, _ = running(daemons, "share")
    first = Pty(console(env, "share"))
    watcher = Pty(console(env, "share", "--read-only"))
    try:
        first.expect("connected to share's console;")
        watcher.expect("connected to share's console (read-only)")
        # A second writer is refused, and told who holds it.
        p = subprocess.run(console(env, "share"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0
        assert f"share's console is held by uid 0 (pid {first.proc.pid})" in p.stderr, p.stderr
        # The observer sees what the writer typed and the guest answered.
        first.type("echo both-$((3*3))\r")
        first.expect("both-9")
        watcher.expect("both-9")
        # Typing as an observer does nothing.
        watcher.type("echo never-$((1+1))\r")
        time.sleep(1)
        assert b"never-2" not in first.seen
        # --force takes the console over; the first writer is told.
        second = Pty(console(env, "share", "--force"))
        try:
            second.expect("connected to share's console;")
            assert first.wait() != 0
            assert b"took the console over (--force)" in first.seen
            assert first.mode_restored()
            second.type("echo second-$((4*4))\r")
            second.expect("second-16")
            watcher.expect("second-16")
        finally:
            second.close()
    finally:
        first.close()
        watcher.close()


def test_attached_across_a_crash_and_the_restart(env, daemons):
    import signal
    d, first = running(daemons, "crash")
    t = Pty(console(env, "crash"))
    try:
        t.expect("connected to crash's console;")
        os.kill(first["pid"], signal.SIGKILL)
        t.expect("crash went down; vmd restarts it")
        d.wait_state("crash", "running", ready=True, pid_not=first["pid"])
        # Still attached, to the new boot.
        t.expect("built-in shell")
        t.type("echo again-$((5*5))\r")
        t.expect("again-25")
        # A stop ends the session: told why, terminal back as it was.
        d.ctl("stop", "crash", check=0)
        assert t.wait() == 0
        assert b"crash stopped" in t.seen
        assert t.mode_restored()
    finally:
        t.close()


def test_sigterm_restores_the_terminal(env, daemons):
    import signal
    d, _ = running(daemons, "sig")
    t = Pty(console(env, "sig"))
    try:
        t.expect("connected to sig's console;")
        assert not t.mode_restored()  # raw while attached
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == -signal.SIGTERM
        assert t.mode_restored()
    finally:
        t.close()
    assert d.status("sig")["sig"]["state"] == "running"


def test_a_client_that_stops_reading_stalls_nothing(env, daemons):
    import json
    import socket
    d, _ = running(daemons, "flood")
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(os.path.join(env.settings["run_dir"], "vmd.sock"))
    s.sendall(json.dumps({"command": "console", "name": "flood", "read_only": True}).encode() + b"\n")
    # The guest writes 6 MB to its console (more than the 4 MiB a client
    # may have pending); the client reads none of it.
    t0 = time.time()
    d.ctl("exec", "flood", "--", "sh", "-c", "head -c 1500000 /dev/zero | od -v > /dev/ttyS0", check=0,
          timeout=600)
    # The daemon answered throughout, and the guest was never held up.
    assert d.ctl("status", "flood", check=0, timeout=10)
    # The log got all of it.
    log = os.path.join(env.settings["log_dir"], "flood.log")
    assert os.path.getsize(log) > 6_000_000
    # The client was dropped: what it reads ends.
    s.settimeout(30)
    got = 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    assert got < 5_500_000, got
    s.close()


def test_vmd_run_at_a_terminal_is_interactive(env):
    from conftest import VMD
    t = Pty([VMD, "run", "-c", env.config, env.define("inter")])
    try:
        t.expect("interactive console; ^] powers the VM off")
        t.expect("built-in shell")
        t.type("echo run-$((7*6))\r")
        t.expect("run-42")
        t.type(b"\x1d")
        assert t.wait(timeout=60) == 0
        assert b"^]: shutting the VM down" in t.seen
        assert t.mode_restored()
    finally:
        t.close()
    env.assert_clean()


def test_a_login_prompt_on_request(env, daemons):
    # vmd.guest.console=login: a getty on ttyS0 instead of a shell; root
    # logs in without a password.
    d = daemons()
    d.define("login", kernel_params=["vmd.guest.console=login"])
    d.ctl("reload", check=0)
    d.wait_state("login", "running", ready=True)
    t = Pty(console(env, "login"))
    try:
        t.type("\r")
        t.expect("login:")
        t.type("root\r")
        # login flushes what was typed ahead: wait for the shell.
        t.expect("root login on 'ttyS0'")
        t.expect("# ")
        t.type("echo in-$((3+4))\r")
        t.expect("in-7")
        t.type(b"\x1d")
        assert t.wait() == 0
    finally:
        t.close()
