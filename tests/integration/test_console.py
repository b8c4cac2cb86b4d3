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


def console(env, *args):
    from conftest import VMD
    return [VMD, "-c", env.config, "console", *args]


def test_console_at_a_terminal_detach_and_backlog(env, daemons):
    d = daemons()
    d.define("tty")
    d.ctl("reload", check=0)
    d.wait_state("tty", "running", ready=True)
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
    d = daemons()
    d.define("script")
    d.ctl("reload", check=0)
    d.wait_state("script", "running", ready=True)
    p = subprocess.run(console(env, "script"), input="echo piped-$((2+3))\n", capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p
    assert "piped-5" in p.stdout
    assert "connected" not in p.stderr


def test_one_writer_force_and_read_only(env, daemons):
    import subprocess
    d = daemons()
    d.define("share")
    d.ctl("reload", check=0)
    d.wait_state("share", "running", ready=True)
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
