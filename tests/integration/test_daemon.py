# SPDX-License-Identifier: LGPL-2.1-or-later
"""vmd daemon: real guests under TCG, kept up, reloaded, adopted by a new
daemon, and stopped without leaving anything behind (the env fixture checks
for leftovers after each test)."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

from conftest import TOP, VMD, special_files
from test_run import add_to_store, garbage_system


def qemu_pid(env, name):
    return env.pid_of(name, "qemu")


def test_autostart_status_and_notify(env, daemons):
    sock_path = os.path.join(env.root, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(60)
    d0 = None
    try:
        env.write_settings()
        os.makedirs(env.settings["definitions_dir"])
        for n in ("a", "b"):
            with open(os.path.join(env.settings["definitions_dir"], f"{n}.json"), "w") as f:
                json.dump({"name": n, "system": env.closure, "memory_mib": 256}, f)
        with open(os.path.join(env.settings["definitions_dir"], "c.json"), "w") as f:
            json.dump({"name": "c", "system": env.closure, "autostart": False}, f)
        d0 = daemons(notify_socket=sock_path)
        # READY=1 once every autostart VM has been launched.
        msg = notify.recv(4096).decode()
        assert "READY=1" in msg
        s = d0.status()
        assert s["a"]["state"] != "stopped" and s["b"]["state"] != "stopped"
        assert s["a"]["pid"] and s["b"]["pid"]
        assert s["c"]["state"] == "stopped" and s["c"]["pid"] is None
        for n in ("a", "b"):
            st = d0.wait_state(n, "running", ready=True)
            assert st["restarts"] == 0
            assert st["boot_time_s"] > 0
            assert st["host"] == "local"
            assert st["last_exit"] is None
            assert st["uptime_s"] >= 0
        # The human table names every VM.
        p = d0.ctl("status", check=0)
        assert [l.split()[0] for l in p.stdout.splitlines()[1:]] == ["a", "b", "c"]
        # Transitions are logged with the VM name.
        out = d0.output()
        for t in ("a: stopped -> preparing", "a: preparing -> starting-shares",
                  "a: starting-shares -> booting", "a: booting -> running"):
            assert t in out
        # An explicit start of the stopped one.
        p = d0.ctl("start", "c", check=0)
        assert "ready in" in p.stderr
        assert d0.status("c")["c"]["ready"]
        d0.ctl("stop", "c", check=0)
        assert d0.status("c")["c"]["state"] == "stopped"
        d0.ctl("status", "nope", check=1)
    finally:
        notify.close()


def kill_qemu_once(d, name):
    """Defines NAME, kills its QEMU once it is ready, and returns its status
    once it is back."""
    d.define(name)
    d.ctl("reload", check=0)
    first = d.wait_state(name, "running", ready=True)
    os.kill(first["pid"], signal.SIGKILL)
    again = d.wait_state(name, "running", ready=True, pid_not=first["pid"])
    assert again["restarts"] == 1
    assert "QEMU was killed by signal 9" in again["last_exit"]
    return again


def test_kill_qemu_restarts_it(env, daemons):
    d = daemons()
    kill_qemu_once(d, "crashy")
    d.ctl("exec", "crashy", "--", "true", check=0)


def test_kill_virtiofsd_restarts_the_vm(env, daemons):
    d = daemons()
    d.define("fsdies")
    d.ctl("reload", check=0)
    first = d.wait_state("fsdies", "running", ready=True)
    os.kill(env.pid_of("fsdies", "fs0"), signal.SIGKILL)
    again = d.wait_state("fsdies", "running", ready=True, pid_not=first["pid"])
    assert "share-failed: virtiofsd for nix-store was killed by signal 9" in again["last_exit"]
    assert not os.path.exists(f"/proc/{first['pid']}") or \
        open(f"/proc/{first['pid']}/stat").read().split()[2] == "Z"


def test_crash_loop_ends_in_failed(env, daemons):
    bogus = garbage_system(env)
    env.write_settings(start_limit_burst=3, start_limit_interval_s=60)
    d = daemons()
    d.define("loop", system=add_to_store(bogus))
    t0 = time.time()
    d.ctl("reload", check=0)
    st = d.wait_state("loop", "failed", timeout=60)
    # Three starts: the first and two restarts, 100 ms then 200 ms apart.
    assert st["restarts"] == 2
    assert "start-failed" in st["last_exit"]
    assert time.time() - t0 < 30
    assert "giving up (failed)" in d.output()
    # It stays down...
    time.sleep(1)
    assert d.status("loop")["loop"]["state"] == "failed"
    # ...until an explicit start, which tries again.
    p = d.ctl("start", "loop")
    assert p.returncode == 2
    assert "QEMU exited with status 1" in p.stderr


def test_reload_adds_removes_changes(env, daemons):
    d = daemons()
    d.define("keep")
    d.define("gone", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"},
                            {"name": "data", "size_mib": 64, "mount": "/data", "persistent": True}],
             keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}])
    d.define("changing")
    d.ctl("reload", check=0)
    keep = d.wait_state("keep", "running", ready=True)
    d.wait_state("gone", "running", ready=True)
    changing = d.wait_state("changing", "running", ready=True)
    d.ctl("exec", "gone", "--", "sh", "-c", "echo kept > /data/file; echo key > /etc/ssh/k; sync", check=0)

    d.undefine("gone")
    d.define("changing", memory_mib=512)
    d.define("new")
    p = d.ctl("reload", check=0)
    assert p.stdout.splitlines() == ["added: new", "removed: gone", "changed: changing", "unchanged: keep"]
    d.wait_state("new", "running", ready=True)
    changed = d.wait_state("changing", "running", ready=True, pid_not=changing["pid"])
    p = d.ctl("exec", "changing", "--", "grep", "MemTotal", "/proc/meminfo", check=0)
    assert 400 * 1024 < int(p.stdout.split()[1]) <= 512 * 1024
    d.wait_for(lambda: "gone" not in d.status() and not os.path.exists(env.run_dir("gone")), "gone to go")
    # The untouched VM was not restarted.
    assert d.status("keep")["keep"]["pid"] == keep["pid"]
    assert d.status("keep")["keep"]["restarts"] == 0
    # Removed: its ephemeral disk and run directory are gone; its volume and
    # key directory stay.
    assert not os.path.exists(os.path.join(env.root, "state", "disks", "gone"))
    assert not os.path.exists(env.run_dir("gone"))
    assert os.path.exists(os.path.join(env.root, "state", "volumes", "gone", "data.img"))
    assert open(os.path.join(env.root, "keys", "gone", "ssh", "k")).read() == "key\n"
    assert changed["restarts"] == 0


def test_invalid_reload_changes_nothing(env, daemons):
    d = daemons()
    d.define("stay")
    d.ctl("reload", check=0)
    before = d.wait_state("stay", "running", ready=True)
    d.define("stay", memory_mib=300)  # a valid change...
    with open(os.path.join(env.settings["definitions_dir"], "broken.json"), "w") as f:
        f.write('{"name": "broken", "vcpus": 0}')  # ...next to an invalid file
    p = d.ctl("reload", check=1)
    assert f"{env.settings['definitions_dir']}/broken.json: vcpus: must be 1..255" in p.stdout
    assert "nothing was changed" in p.stderr
    # SIGHUP takes the same path.
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: d.output().count("reload refused") >= 2, "the refused SIGHUP reload")
    time.sleep(1)
    after = d.status()
    assert set(after) == {"stay"}
    assert after["stay"]["pid"] == before["pid"] and after["stay"]["state"] == "running"


def test_special_files_at_start_block_nothing(env, daemons):
    paths = special_files(env.settings["definitions_dir"])
    d = daemons()  # answers status: start-up got past the definitions
    assert "running with the VMs adopted so far" in d.output()
    assert d.status() == {}
    t0 = time.time()
    p = d.ctl("reload", timeout=10, check=1)
    assert time.time() - t0 < 5
    assert sorted(line for line in p.stdout.splitlines() if line) == sorted(f"{f}: not a regular file" for f in paths)
    t0 = time.time()
    assert d.stop(timeout=10) == 0
    assert time.time() - t0 < 5


def test_special_files_at_reload_change_nothing(env, daemons):
    d = daemons()
    d.define("stay")
    d.ctl("reload", check=0)
    before = d.wait_state("stay", "running", ready=True)
    paths = special_files(env.settings["definitions_dir"])
    t0 = time.time()
    p = d.ctl("reload", timeout=10, check=1)
    assert time.time() - t0 < 5
    for f in paths:
        assert f"{f}: not a regular file" in p.stdout
    assert "nothing was changed" in p.stderr
    # SIGHUP takes the same path and leaves the loop free.
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: d.output().count("reload refused") >= 2, "the refused SIGHUP reload", timeout=10)
    after = d.ctl("status", "--json", timeout=10, check=0)
    after = {v["name"]: v for v in json.loads(after.stdout)}
    assert set(after) == {"stay"}
    assert after["stay"]["pid"] == before["pid"] and after["stay"]["state"] == "running"
    assert d.stop(timeout=30) == 0


def test_daemon_kill9_then_adoption(env, daemons):
    d = daemons()
    for n in ("one", "two"):
        d.define(n, disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    d.ctl("reload", check=0)
    pids = {n: d.wait_state(n, "running", ready=True)["pid"] for n in ("one", "two")}
    d.ctl("exec", "one", "--", "sh", "-c", "echo before > /var/marker", check=0)
    d.kill()
    # The VMs outlive their daemon...
    time.sleep(1)
    for pid in pids.values():
        assert os.path.exists(f"/proc/{pid}")
    # ...and the next one adopts them: same pids, no restart, exec works.
    d2 = daemons()
    s = d2.status()
    assert {n: s[n]["pid"] for n in s} == pids
    assert all(s[n]["state"] == "running" and s[n]["ready"] for n in s)
    p = d2.ctl("exec", "one", "--", "cat", "/var/marker", check=0)
    assert p.stdout == "before\n"
    assert "adopted (QEMU pid" in d2.output()
    # An adopted VM is supervised like any other.
    os.kill(pids["two"], signal.SIGKILL)
    d2.wait_state("two", "running", ready=True, pid_not=pids["two"])
    assert d2.stop() == 0


def test_last_exit_survives_adoption(env, daemons):
    """How the boot before this one ended is in state.json: the next daemon
    still says why the VM was restarted."""
    d = daemons()
    again = kill_qemu_once(d, "scarred")
    d.kill()
    d2 = daemons()
    st = d2.status("scarred")["scarred"]
    assert st["pid"] == again["pid"] and st["state"] == "running"
    assert st["restarts"] == 1
    assert st["last_exit"] == again["last_exit"]
    p = d2.ctl("status", "scarred", check=0)
    assert "QEMU was killed by signal 9" in p.stdout
    assert d2.stop() == 0


def test_keep_running_then_adopt(env, daemons):
    d = daemons("--keep-running")
    d.define("survivor")
    d.ctl("reload", check=0)
    pid = d.wait_state("survivor", "running", ready=True)["pid"]
    assert d.stop() == 0
    assert os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(d.sock)
    d2 = daemons()
    assert d2.status()["survivor"]["pid"] == pid
    # SIGUSR2: the same, for an upgrade under systemd (exit status 75).
    assert d2.stop(signal.SIGUSR2) == 75
    assert os.path.exists(f"/proc/{pid}")
    d3 = daemons()
    assert d3.status()["survivor"]["pid"] == pid
    assert d3.stop() == 0
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_sigterm_stops_everything(env, daemons):
    d = daemons()
    for n in ("p", "q", "r"):
        d.define(n, disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    d.ctl("reload", check=0)
    for n in ("p", "q", "r"):
        d.wait_state(n, "running", ready=True)
    t0 = time.time()
    assert d.stop() == 0
    took = time.time() - t0
    out = d.output()
    # Gracefully (ACPI powerdown) and in parallel: together about as long
    # as one.
    for n in ("p", "q", "r"):
        log = open(os.path.join(env.root, "log", f"{n}.log")).read()
        assert "stopping: ACPI powerdown" in log
        assert "reboot: Power down" in log
        assert f"{n}: stopping -> stopped" in out
    assert took < 20, took
    assert not os.path.exists(d.sock)


def test_control_socket_survives_garbage(env, daemons):
    d = daemons()
    d.define("steady")
    d.ctl("reload", check=0)
    d.wait_state("steady", "running", ready=True)
    junk = [b"not json\n", b"[1,2,3]\n", b"{\"command\": 7}\n", b"{\"command\": \"frobnicate\"}\n",
            b"{\"command\": \"status\", \"name\": \"../etc\"}\n", b"\x00\xff\xfe garbage\n",
            b"{\"command\": \"exec\", \"name\": \"steady\", \"argv\": \"sh\"}\n",
            b"{\"command\": \"start\"}\n", b"{\"command\": \"logs\", \"name\": \"steady\", \"follow\": 3}\n"]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    for _ in range(200):
        for j in junk:
            s.sendall(j)
    s.sendall(b"{\"command\": \"status\", \"id\": 42}\n")
    f = s.makefile("rb")
    replies = [json.loads(f.readline()) for _ in range(200 * len(junk) + 1)]
    assert all(r["ok"] is False for r in replies[:-1])
    assert replies[-1]["ok"] is True and replies[-1]["id"] == 42
    s.close()
    # An oversized line: an error reply, then the connection closes.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(d.sock)
    try:
        s.sendall(b"{" + b" " * (70 * 1024))
    except BrokenPipeError:
        pass
    f = s.makefile("rb")
    assert b"longer than" in f.readline()
    s.close()
    # Many clients that connect and vanish.
    for _ in range(100):
        c = socket.socket(socket.AF_UNIX)
        c.connect(d.sock)
        c.sendall(b"{\"comm")
        c.close()
    # A peer that is neither root nor in the control group is refused.
    os.chmod(env.root, 0o711)
    os.chmod(d.sock, 0o666)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "/usr/bin/python3", "-c",
                        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                        "print(s.makefile().readline())",
                        d.sock], capture_output=True, text=True, timeout=30)
    assert "permission denied" in p.stdout, p.stdout + p.stderr
    st = d.status()
    assert st["steady"]["state"] == "running"
    assert d.proc.poll() is None


def test_exec_and_logs(env, daemons):
    d = daemons()
    d.define("talk")
    d.ctl("reload", check=0)
    d.wait_state("talk", "running", ready=True)
    p = d.ctl("exec", "talk", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    p = d.ctl("exec", "talk", "--", "no-such-command")
    assert p.returncode == 127
    p = d.ctl("logs", "talk", check=0)
    assert "-- vmd" in p.stdout and "starting talk" in p.stdout
    follow = subprocess.Popen([VMD, "-c", env.config, "logs", "talk", "-f"], stdout=subprocess.PIPE)
    try:
        time.sleep(1)
        d.ctl("exec", "talk", "--", "sh", "-c", "echo hello-from-the-console > /dev/console", check=0)
        end = time.time() + 30
        seen = b""
        fd = follow.stdout.fileno()
        while time.time() < end and b"hello-from-the-console" not in seen:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                seen += os.read(fd, 65536)
        seen = seen.decode(errors="replace")
        assert "hello-from-the-console" in seen
    finally:
        follow.terminate()
        follow.wait()
    d.ctl("logs", "nope", check=1)
    d.ctl("exec", "nope", "--", "true", check=1)


def test_exec_timeout_kills_the_command(env, daemons):
    d = daemons()
    d.define("slow")
    d.ctl("reload", check=0)
    d.wait_state("slow", "running", ready=True)
    t0 = time.time()
    p = d.ctl("exec", "--timeout", "2", "slow", "--", "sleep", "100")
    # Like timeout(1), and the command is gone from the guest by the time
    # the answer comes.
    assert p.returncode == 124, p.stderr
    assert "did not finish within 2 s" in p.stderr
    assert time.time() - t0 < 20
    ps = d.ctl("exec", "slow", "--", "ps", "-o", "pid,args", check=0).stdout
    assert "sleep 100" not in ps, ps


def test_execs_run_concurrently(env, daemons):
    d = daemons()
    d.define("busy")
    d.ctl("reload", check=0)
    d.wait_state("busy", "running", ready=True)
    slow = subprocess.Popen([VMD, "-c", env.config, "exec", "busy", "--", "sleep", "5"])
    try:
        time.sleep(0.5)
        t0 = time.time()
        d.ctl("exec", "busy", "--", "true", check=0)
        # Not queued behind the sleep.
        assert time.time() - t0 < 4
        assert slow.poll() is None
    finally:
        assert slow.wait(timeout=60) == 0


def test_eight_vms_at_once(env, daemons):
    d = daemons()
    names = [f"vm{i}" for i in range(8)]
    for n in names:
        d.define(n, memory_mib=192)
    d.ctl("reload", check=0)
    for n in names:
        d.wait_state(n, "running", ready=True, timeout=240)
    s = d.status()
    assert len({s[n]["pid"] for n in names}) == 8
    assert d.stop() == 0


def test_start_sweeps_leftovers_but_not_live_vms(env, daemons):
    # What a dead daemon left: a run directory and an ephemeral disk.
    ghost_run = env.run_dir("ghost")
    os.makedirs(ghost_run)
    open(os.path.join(ghost_run, "qmp.sock"), "w").close()
    open(os.path.join(ghost_run, "qemu.pid"), "w").write("999999\n")
    ghost_disks = os.path.join(env.root, "state", "disks", "ghost")
    os.makedirs(ghost_disks)
    open(os.path.join(ghost_disks, "scratch.img"), "w").close()
    # A live throwaway run the daemon must leave alone.
    run_def = env.define("thrown")
    run = env.popen(run_def, "sleep", "600")
    env.wait_ready(run)
    try:
        d = daemons()
        assert not os.path.exists(ghost_run)
        assert not os.path.exists(ghost_disks)
        assert "thrown" not in d.status()
        assert run.poll() is None
        assert os.path.exists(os.path.join(env.run_dir("thrown"), "qmp.sock"))
        assert "leaving it alone" in d.output()
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)


def test_recycled_pid_is_not_adopted(env, daemons):
    # A state file that names a live process that is not ours (a recycled
    # pid): the daemon must neither adopt nor kill it.
    import fcntl
    victim = subprocess.Popen(["sleep", "600"])
    run = env.run_dir("imposter")
    os.makedirs(run)
    lock = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held as a live QEMU would hold it
    try:
        definition = {"name": "imposter", "system": env.closure}
        state = {"version": 1, "definition": definition,
                 "qemu": {"pid": victim.pid, "start_time": 1},
                 "shares": [{"pid": victim.pid, "start_time": 1}],
                 "started_at": 0, "boot_usec": 1, "ready": True, "restarts": 0}
        with open(os.path.join(run, "state.json"), "w") as f:
            json.dump(state, f)
        d = daemons()
        assert "imposter" not in d.status()
        assert victim.poll() is None
        assert "not adopting" in d.output()
    finally:
        victim.kill()
        victim.wait()
        os.close(lock)
        import shutil
        shutil.rmtree(run, ignore_errors=True)


def test_shutdown_command_powers_off_and_waits(env, daemons):
    """`vmd shutdown`, what vmd-guests.service runs when the host goes down:
    even a --keep-running daemon powers every VM off gracefully, exits 0,
    and the command returns only once the daemon is gone."""
    d = daemons("--keep-running")
    for n in ("s1", "s2"):
        d.define(n)
    d.ctl("reload", check=0)
    pids = [d.wait_state(n, "running", ready=True)["pid"] for n in ("s1", "s2")]
    p = d.ctl("shutdown", check=0)
    assert "stopping every VM" in p.stderr
    # The command returned: the daemon has closed its socket and is exiting.
    assert d.proc.wait(timeout=30) == 0
    for n, pid in zip(("s1", "s2"), pids):
        log = open(os.path.join(env.root, "log", f"{n}.log")).read()
        assert "stopping: ACPI powerdown" in log and "reboot: Power down" in log
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert "shutdown requested: stopping every VM" in d.output()
    # No daemon: nothing to do, and that is no error (an ExecStop= at
    # shutdown must not fail because the daemon is already gone).
    p = d.ctl("shutdown", check=0)
    assert "no daemon runs" in p.stderr


def unit_setting(unit, key):
    build_dir = os.path.dirname(os.environ.get("VMD_BIN", os.path.join(TOP, "build", "vmd")))
    with open(os.path.join(build_dir, unit)) as f:
        for line in f:
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip()
    raise AssertionError(f"{unit} has no {key}=")


def test_unit_restart_for_new_settings_keeps_vms(env, daemons):
    """What systemd does with the installed units, done by hand (no systemd
    here): a restart of vmd.service (new package, new settings) sends its
    KillSignal, and the VMs stay up through it and are adopted by the next
    daemon, which runs with the new settings; vmd-guests.service's ExecStop
    at host shutdown powers them off gracefully."""
    sig = unit_setting("vmd.service", "KillSignal")
    assert unit_setting("vmd.service", "KillMode") == "process"
    assert unit_setting("vmd.service", "SuccessExitStatus") == "75"
    assert unit_setting("vmd.service", "ExecReload").endswith("/vmd reload")
    assert unit_setting("vmd-guests.service", "ExecStop").endswith("/vmd shutdown")
    d = daemons()
    d.define("steady")
    d.ctl("reload", check=0)
    pid = d.wait_state("steady", "running", ready=True)["pid"]
    assert d.stop(getattr(signal, sig)) == 75
    env.write_settings(stop_timeout_s=15, log_max_bytes=1 << 20)
    d2 = daemons()
    s = d2.status()["steady"]
    assert s["pid"] == pid and s["state"] == "running" and s["ready"]
    assert "stopping" not in open(os.path.join(env.root, "log", "steady.log")).read()
    # The host goes down.
    d2.ctl("shutdown", check=0)
    assert d2.proc.wait(timeout=60) == 0
    assert "stopping: ACPI powerdown" in open(os.path.join(env.root, "log", "steady.log")).read()


def settings_with(env, name, **changes):
    """Another settings file: env's, with changes."""
    path = os.path.join(env.root, name)
    with open(path, "w") as f:
        json.dump({**env.settings, **changes}, f)
    return path


def test_second_daemon_on_the_same_state_is_refused(env, daemons):
    d = daemons()
    d.define("only", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    d.ctl("reload", check=0)
    pid = d.wait_state("only", "running", ready=True)["pid"]
    d.ctl("exec", "only", "--", "sh", "-c", "echo kept > /var/marker", check=0)
    disks = os.path.join(env.settings["state_dir"], "disks", "only")
    before = sorted(os.listdir(disks))
    assert before
    # Its own run_dir, the same state_dir: refused at once, nothing done.
    other = settings_with(env, "other.json", run_dir=os.path.join(env.root, "run2"))
    p = env.vmd("daemon", "-c", other, timeout=30)
    assert p.returncode == 2, p.stderr
    assert f"another vmd daemon already uses {env.settings['state_dir']} (state_dir)" in p.stderr
    assert not os.path.exists(os.path.join(env.root, "run2", "vms"))
    # Its own run_dir and state_dir, the same keys_dir: refused too.
    other = settings_with(env, "other2.json", run_dir=os.path.join(env.root, "run3"),
                          state_dir=os.path.join(env.root, "state3"))
    p = env.vmd("daemon", "-c", other, timeout=30)
    assert p.returncode == 2, p.stderr
    assert f"another vmd daemon already uses {env.settings['keys_dir']} (keys_dir)" in p.stderr
    # The first daemon's VM did not notice.
    assert sorted(os.listdir(disks)) == before
    s = d.status()["only"]
    assert s["pid"] == pid and s["state"] == "running" and s["restarts"] == 0
    assert d.ctl("exec", "only", "--", "cat", "/var/marker", check=0).stdout == "kept\n"
    # "vmd run" still runs next to the daemon, on the same directories.
    env.run(env.define("beside"), "true", check=0)
    assert d.stop() == 0


def test_client_says_what_failed(env, daemons):
    d = daemons()
    d.kill()
    # A socket no one listens on any more.
    p = d.ctl("status", check=2)
    assert f"cannot reach the daemon at {d.sock}: Connection refused" in p.stderr
    # A daemon that dies with the request half sent (bigger than the
    # socket's buffer): the write fails, and the message says how.
    os.unlink(d.sock)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(d.sock)
    srv.listen(1)
    t = threading.Thread(target=lambda: srv.accept()[0].close())
    t.start()
    try:
        p = d.ctl("exec", "gone", "--", "true", *["x" * 100000] * 10, check=2)
    finally:
        t.join(timeout=30)
        srv.close()
        os.unlink(d.sock)
    assert "cannot send the request to the daemon: Broken pipe" in p.stderr, p.stderr
    assert "Success" not in p.stderr


def test_reload_to_a_boot_that_cannot_start_keeps_the_running_vm(env, daemons):
    d = daemons()
    d.define("swap")
    d.ctl("reload", check=0)
    before = d.wait_state("swap", "running", ready=True)
    defs = env.settings["definitions_dir"]
    # A closure that is not there (garbage-collected, or never built).
    missing = "/nix/store/00000000000000000000000000000000-missing"
    d.define("swap", system=missing)
    p = d.ctl("reload", check=1)
    assert f"{defs}/swap.json: system: {missing}: No such file or directory" in p.stdout
    # A share whose source is not there: only a boot finds that out.
    gone = os.path.join(env.root, "gone")
    d.define("swap", shares=[{"tag": "data", "source": gone, "target": "/data"}])
    p = d.ctl("reload", check=1)
    assert f"{defs}/swap.json: shares[0].source: {gone}: No such file or directory" in p.stdout
    assert "nothing was changed" in p.stderr
    time.sleep(1)
    after = d.status("swap")["swap"]
    assert after["pid"] == before["pid"] and after["state"] == "running" and after["ready"]
    # The old definition is the one kept.
    assert after["system"] == env.closure
    assert "swap: stopping" not in d.output() and "swap: running -> stopping" not in d.output()
    # Once the source is there, the same reload swaps the VM.
    os.mkdir(gone)
    p = d.ctl("reload", check=0)
    assert "changed: swap" in p.stdout
    d.wait_state("swap", "running", ready=True, pid_not=before["pid"])
    d.ctl("exec", "swap", "--", "test", "-d", "/data", check=0)


def test_restart_with_a_broken_closure_keeps_the_running_vm(env, daemons):
    # A closure of our own whose kernel we can take away: its kernel is a
    # symlink out of the store to a file of the test's.
    kernel = os.path.join(env.root, "vmlinux")
    shutil.copy(os.path.join(env.closure, "kernel"), kernel)
    own = os.path.join(env.root, "own-system")
    os.makedirs(own)
    os.symlink(kernel, os.path.join(own, "kernel"))
    for part in ("initrd", "init", "kernel-params"):
        os.symlink(os.path.join(env.closure, part), os.path.join(own, part))
    system = add_to_store(own)
    try:
        d = daemons()
        d.define("swap", system=system)
        d.ctl("reload", check=0)
        before = d.wait_state("swap", "running", ready=True)
        os.unlink(kernel)
        p = d.ctl("restart", "swap", check=2)
        assert f"not restarted, the running boot goes on: system: {system}/kernel: No such file or directory" \
            in p.stderr, p.stderr
        time.sleep(1)
        after = d.status("swap")["swap"]
        assert after["pid"] == before["pid"] and after["state"] == "running" and after["ready"]
        assert after["restarts"] == 0
        # With its kernel back, the restart happens.
        shutil.copy(os.path.join(env.closure, "kernel"), kernel)
        d.ctl("restart", "swap", check=0)
        assert d.status("swap")["swap"]["pid"] != before["pid"]
        d.stop()
    finally:
        subprocess.run(["nix-store", "--delete", system], check=False, capture_output=True)
