# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared fixtures for the integration tests: real VMs under TCG.

Every test gets its own settings file and directories under a fresh
/tmp/vmd-* directory, and its own QEMU and virtiofsd symlinks in there, so
every process the test starts carries the directory in its argv[0]. After
the test, the fixture checks that nothing is left: no process, no socket,
no disk image. A leftover fails the test."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMD = os.environ.get("VMD_BIN", os.path.join(TOP, "build", "vmd"))


QEMU_USER = "vmd-qemu"


@pytest.fixture(scope="session", autouse=True)
def qemu_user():
    """QEMU runs as vmd-qemu (the settings' default qemu_user), which
    tests/install-deps creates; so does this, on a machine set up before it
    did."""
    if subprocess.run(["id", QEMU_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--user-group", "--groups", "kvm", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", QEMU_USER], check=True)
    return QEMU_USER


@pytest.fixture(scope="session")
def closure():
    path = os.environ.get("VMD_GUEST")
    if not path:
        out = subprocess.run([os.path.join(TOP, "tests", "guest", "build"), "--quiet"],
                             check=True, capture_output=True, text=True)
        path = out.stdout.strip()
    assert os.path.isfile(os.path.join(path, "init")), path
    return path


@pytest.fixture(scope="session")
def image_closure(closure):
    """The image guest closure (the host setting image_system): kernel,
    initrd with vmd's image init, guest agent. Built like the tiny guest
    when VMD_IMAGE_GUEST does not name it; no skip: if it cannot be had,
    the image tests fail."""
    path = os.environ.get("VMD_IMAGE_GUEST")
    if not path:
        out = subprocess.run([os.path.join(TOP, "tests", "guest", "build"), "--image", "--quiet"],
                             capture_output=True, text=True)
        assert out.returncode == 0, f"tests/guest/build --image failed:\n{out.stderr}"
        path = out.stdout.strip()
    for part in ("kernel", "initrd"):
        assert os.path.isfile(os.path.join(path, part)), f"{path}: no {part}"
    assert os.path.realpath(path) != os.path.realpath(closure), f"{path} is the tiny guest, not the image guest"
    return path


def definition(closure, name, fields):
    """A definition: of a closure, or of an image if fields name one."""
    d = {"name": name, "memory_mib": 256}
    if "image" not in fields:
        d["system"] = closure
    d.update(fields)
    return d


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z" and int(pid) != os.getpid():
            found.append((int(pid), cmd))
    return found


def special_files(directory):
    """Puts a FIFO, a socket, a link to /dev/zero and a directory, all named
    *.json, into directory: none is a definition, and opening or reading any
    of them naively would block or never end. Returns their paths."""
    paths = [os.path.join(directory, n) for n in ("fifo.json", "socket.json", "zero.json", "dir.json")]
    os.makedirs(directory, exist_ok=True)
    os.mkfifo(paths[0])
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(paths[1])
    os.symlink("/dev/zero", paths[2])
    os.mkdir(paths[3])
    return paths


class Env:
    def __init__(self, root, closure):
        self.root = root
        self.closure = closure
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.bin)
        self.qemu = os.path.join(self.bin, "qemu-system-x86_64")
        self.virtiofsd = os.path.join(self.bin, "virtiofsd")
        os.symlink(shutil.which("qemu-system-x86_64"), self.qemu)
        os.symlink("/usr/lib/qemu/virtiofsd", self.virtiofsd)
        self.settings = {
            "state_dir": os.path.join(root, "state"),
            "run_dir": os.path.join(root, "run"),
            "log_dir": os.path.join(root, "log"),
            "keys_dir": os.path.join(root, "keys"),
            "definitions_dir": os.path.join(root, "vms.d"),
            "accel": "tcg",
            "qemu": self.qemu,
            "virtiofsd": self.virtiofsd,
            "ready_timeout_s": 120,
            "stop_timeout_s": 20,
        }
        self.write_settings()

    @property
    def config(self):
        return os.path.join(self.root, "vmd.json")

    def write_settings(self, **changes):
        self.settings.update(changes)
        with open(self.config, "w") as f:
            json.dump(self.settings, f)

    def define(self, name, **fields):
        d = definition(self.closure, name, fields)
        path = os.path.join(self.root, f"{name}.json")
        with open(path, "w") as f:
            json.dump(d, f)
        return path

    def vmd(self, *args, timeout=180, check=None):
        p = subprocess.run([VMD, *args], capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert p.returncode == check, f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    def run(self, defpath, *cmd, timeout=180, check=None, extra=()):
        args = ["run", "-c", self.config, *extra, defpath]
        if cmd:
            args += ["--", *cmd]
        return self.vmd(*args, timeout=timeout, check=check)

    def popen(self, defpath, *cmd, extra=()):
        args = [VMD, "run", "-c", self.config, *extra, defpath]
        if cmd:
            args += ["--", *cmd]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run_dir(self, name):
        return os.path.join(self.settings["run_dir"], "vms", name)

    def wait_for_file(self, path, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            if os.path.exists(path):
                return
            time.sleep(0.05)
        raise AssertionError(f"{path} did not appear")

    def wait_ready(self, proc, timeout=120):
        """Reads stderr until the "ready in" line; returns the lines seen."""
        lines = []
        end = time.time() + timeout
        while time.time() < end:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if " ready in " in line:
                return lines
        raise AssertionError("no ready line: " + "".join(lines))

    def pid_of(self, name, what):
        with open(os.path.join(self.run_dir(name), what + ".pid")) as f:
            return int(f.read())

    def leftovers(self):
        left = [f"process {pid}: {cmd}" for pid, cmd in processes_mentioning(self.root)]
        for sub in ("run/vms", "state/disks"):
            base = os.path.join(self.root, sub)
            if os.path.isdir(base):
                left += [os.path.join(base, n) for n in sorted(os.listdir(base))]
        return left

    def assert_clean(self, timeout=10):
        end = time.time() + timeout
        while True:
            left = self.leftovers()
            if not left or time.time() > end:
                break
            time.sleep(0.1)
        assert not left, "left behind:\n" + "\n".join(left)


@pytest.fixture
def env(closure):
    root = tempfile.mkdtemp(prefix="vmd-", dir="/tmp")
    e = Env(root, closure)
    try:
        yield e
        e.assert_clean()
    finally:
        for pid, _ in processes_mentioning(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["umount", "-q", "-R", os.path.join(root, "state")], check=False,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


class Daemon:
    """A `vmd daemon` for one test, with its definitions in env's vms.d."""

    def __init__(self, env, *extra, notify_socket=None):
        self.env = env
        self.extra = extra
        self.log_path = os.path.join(env.root, f"daemon-{time.time_ns()}.log")
        os.makedirs(env.settings["definitions_dir"], exist_ok=True)
        envvars = dict(os.environ)
        if notify_socket:
            envvars["NOTIFY_SOCKET"] = notify_socket
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([VMD, "daemon", "-c", env.config, *extra], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=envvars)
        self.sock = os.path.join(env.settings["run_dir"], "vmd.sock")
        self.wait_for(self.answers, "the control socket")

    def answers(self):
        """The daemon answers a request. Connecting is not enough: the socket
        listens before the daemon's start-up (sweep, adoption, first load) is
        over, and requests are answered only after it."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        try:
            s.connect(self.sock)
            s.sendall(b'{"command": "status"}\n')
            return s.makefile("rb").readline().startswith(b"{")
        except OSError:
            return False
        finally:
            s.close()

    def wait_for(self, pred, what, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.output()}")
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def define(self, name, **fields):
        d = definition(self.env.closure, name, fields)
        path = os.path.join(self.env.settings["definitions_dir"], f"{name}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(d, f)
        os.rename(path + ".tmp", path)
        return path

    def undefine(self, name):
        os.unlink(os.path.join(self.env.settings["definitions_dir"], f"{name}.json"))

    def ctl(self, *args, check=None, timeout=180):
        return self.env.vmd("-c", self.env.config, *args, check=check, timeout=timeout)

    def status(self, name=None):
        p = self.ctl("status", *([name] if name else []), "--json", check=0)
        vms = json.loads(p.stdout)
        return {v["name"]: v for v in vms}

    def wait_state(self, name, state, ready=None, timeout=120, pid_not=None):
        def ok():
            s = self.status().get(name)
            if not s or s["state"] != state:
                return None
            if ready is not None and s["ready"] != ready:
                return None
            if pid_not is not None and s["pid"] == pid_not:
                return None
            return s
        return self.wait_for(ok, f"{name} to be {state}", timeout)

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.log.close()
        return self.proc.returncode

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def lv(env):
    """A libvirtd of the test's own (libvirtd.py)."""
    from libvirtd import PrivateLibvirtd
    # libvirt's QEMU runs as its own user and must reach the images.
    os.chmod(env.root, 0o711)
    inst = PrivateLibvirtd(env.root)
    yield inst
    inst.close()


@pytest.fixture
def daemons(env):
    """Starts daemons on demand; stops whatever is left at the end."""
    started = []

    def start(*extra, **kw):
        d = Daemon(env, *extra, **kw)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.stop()
