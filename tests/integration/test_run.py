# SPDX-License-Identifier: LGPL-2.1-or-later
"""vmd run: real guests under TCG, the store over virtiofs, and nothing left
behind whichever way a run ends (the env fixture checks that after each
test)."""

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import time

from conftest import processes_mentioning


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_store_read_and_exit_status(env):
    d = env.define("store")
    initrd = os.path.realpath(os.path.join(env.closure, "initrd"))
    p = env.run(d, "sh", "-c", f"sha256sum {initrd}; echo to-stderr >&2; exit 7")
    assert p.returncode == 7, p.stderr
    # The guest read the whole file through virtiofsd: same bytes.
    assert p.stdout.split()[0] == sha256(initrd)
    assert "to-stderr" in p.stderr
    assert "to-stderr" not in p.stdout
    assert "store: ready in " in p.stderr


def test_command_status_passthrough(env):
    d = env.define("status")
    assert env.run(d, "true").returncode == 0
    p = env.run(d, "sh", "-c", "kill -9 $$")
    assert p.returncode == 128 + 9


def test_ephemeral_disk_is_fresh_every_run(env):
    d = env.define("eph", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    p = env.run(d, "sh", "-c", "grep ' /var ext4 ' /proc/mounts && echo secret > /var/marker && sync && cat /var/marker",
                check=0)
    assert "secret" in p.stdout
    p = env.run(d, "sh", "-c", "ls -A /var; test ! -e /var/marker", check=0)
    assert "marker" not in p.stdout


def test_store_is_read_only_even_after_remount(env):
    d = env.define("rostore")
    # The guest may remount its side read-write, the host side stays
    # read-only: virtiofsd runs on a read-only bind of the store.
    p = env.run(d, "sh", "-c",
                "touch /nix/store/x 2>&1 && exit 10; "
                "mount -o remount,rw /nix/store; touch /nix/store/vmd-write-test 2>&1 && exit 11; exit 0")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists("/nix/store/vmd-write-test")


def test_ctrl_c_shuts_down_cleanly(env):
    d = env.define("ctrlc")
    proc = env.popen(d)
    env.wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "shutting the VM down" in err
    # The console reached stdout, up to the ACPI power-off.
    assert "Power down" in out


def test_sigterm_shuts_down_cleanly(env):
    d = env.define("sigterm")
    proc = env.popen(d, "sleep", "600")
    env.wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err


def test_kill_qemu(env):
    d = env.define("killqemu")
    proc = env.popen(d, "sleep", "600")
    env.wait_ready(proc)
    os.kill(env.pid_of("killqemu", "qemu"), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "QEMU was killed by signal 9" in err


def test_kill_virtiofsd_stops_the_vm(env):
    d = env.define("killfs")
    proc = env.popen(d, "sleep", "600")
    env.wait_ready(proc)
    qemu = env.pid_of("killfs", "qemu")
    os.kill(env.pid_of("killfs", "fs0"), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "virtiofsd for nix-store was killed by signal 9" in err
    # The guest would hang on its store: QEMU went down with virtiofsd.
    assert not os.path.exists(f"/proc/{qemu}") or open(f"/proc/{qemu}/stat").read().split()[2] == "Z"


def test_vmd_killed_takes_its_children(env):
    d = env.define("killvmd", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    proc = env.popen(d, "sleep", "600")
    env.wait_ready(proc)
    proc.kill()
    proc.wait()
    # Children die with a throwaway run (parent-death signal).
    deadline = time.time() + 10
    while processes_mentioning(env.root) and time.time() < deadline:
        time.sleep(0.1)
    assert not processes_mentioning(env.root)
    stale = os.path.join(env.root, "state", "disks", "killvmd", "scratch.img")
    assert os.path.exists(stale)
    # The next run sweeps the stale run directory and disk, even one the
    # definition no longer has (the fixture checks nothing is left).
    d = env.define("killvmd")
    env.run(d, "true", check=0)
    assert not os.path.exists(stale)


def add_to_store(path):
    return subprocess.run(["nix-store", "--add", path], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_bad_kernel_path(env):
    bogus = os.path.join(env.root, "bogus-system")
    os.makedirs(bogus)
    os.symlink(os.path.join(env.closure, "initrd"), os.path.join(bogus, "initrd"))
    os.symlink(os.path.join(env.closure, "init"), os.path.join(bogus, "init"))
    system = add_to_store(bogus)
    d = env.define("badkernel", system=system, disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    p = env.run(d, "true")
    assert p.returncode == 2
    errors = [l for l in p.stderr.splitlines() if "error" in l]
    assert len(errors) == 1, p.stderr
    assert f"{system}/kernel: No such file or directory" in errors[0]


def test_kernel_params_not_a_regular_file(env):
    # The store holds no FIFO, but a link to one outside: reading it must
    # not wait for a writer.
    fifo = os.path.join(env.root, "params-fifo")
    os.mkfifo(fifo)
    linked = os.path.join(env.root, "fifo-params-system")
    os.makedirs(linked)
    for f in ("kernel", "initrd", "init"):
        os.symlink(os.path.join(env.closure, f), os.path.join(linked, f))
    os.symlink(fifo, os.path.join(linked, "kernel-params"))
    system = add_to_store(linked)
    d = env.define("fifoparams", system=system)
    p = env.run(d, "true", timeout=20)
    assert p.returncode == 2
    assert f"{system}/kernel-params: not a regular file" in p.stderr


def test_system_outside_the_store(env):
    outside = os.path.join(env.root, "outside-system")
    shutil.copytree(env.closure, outside, symlinks=True)
    d = env.define("outside", system=outside)
    p = env.run(d, "true")
    assert p.returncode == 2
    assert f"{outside} is not inside /nix/store, the only part of the host the guest sees" in p.stderr


def test_system_through_a_result_link(env):
    link = os.path.join(env.root, "result")
    os.symlink(env.closure, link)
    d = env.define("linked", system=link)
    p = env.run(d, "cat", "/proc/cmdline", check=0)
    # The guest gets the store path, which it can resolve.
    assert f"init={env.closure}/init" in p.stdout


def test_missing_virtiofsd(env):
    env.write_settings(virtiofsd=os.path.join(env.root, "no-such-virtiofsd"))
    d = env.define("novfs")
    p = env.run(d, "true")
    assert p.returncode == 2
    errors = [l for l in p.stderr.splitlines() if "error" in l]
    assert len(errors) == 1, p.stderr
    assert "no-such-virtiofsd: No such file or directory" in errors[0]


def garbage_system(env):
    """A closure QEMU refuses: the real initrd and init, a kernel that is not
    one. Not in the store yet (see add_to_store)."""
    bogus = os.path.join(env.root, "garbage-system")
    os.makedirs(bogus)
    with open(os.path.join(bogus, "kernel"), "w") as f:
        f.write("not a kernel\n")
    os.symlink(os.path.join(env.closure, "initrd"), os.path.join(bogus, "initrd"))
    os.symlink(os.path.join(env.closure, "init"), os.path.join(bogus, "init"))
    return bogus


def test_qemu_fails_halfway(env):
    # virtiofsd and the disk exist by the time QEMU refuses the kernel:
    # everything is undone.
    bogus = garbage_system(env)
    d = env.define("garbage", system=add_to_store(bogus),
                   disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    p = env.run(d, "true")
    assert p.returncode == 2
    assert "QEMU exited with status 1 before the guest was ready" in p.stderr
    # QEMU's own reason, from this boot's part of the log.
    assert "linux kernel too old" in p.stderr


def test_second_run_of_same_vm_is_refused(env):
    d = env.define("twice")
    first = env.popen(d, "sleep", "600")
    env.wait_ready(first)
    p = env.run(d, "true")
    assert p.returncode == 2
    assert "already running" in p.stderr
    # The first one was not disturbed.
    assert first.poll() is None
    assert os.path.exists(os.path.join(env.run_dir("twice"), "qmp.sock"))
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)


def test_memory_2048(env):
    # microvm.nix#171: memfd guests hung at exactly 2048 MiB.
    d = env.define("mem2g", memory_mib=2048)
    p = env.run(d, "sh", "-c", "grep MemTotal /proc/meminfo", check=0)
    kib = int(p.stdout.split()[1])
    assert 1900 * 1024 < kib <= 2048 * 1024


def test_slow_virtiofsd_is_waited_for(env):
    # No startup race: QEMU connects to the pre-bound socket, which queues
    # until virtiofsd accepts, however late.
    slow = os.path.join(env.bin, "slow-virtiofsd")
    with open(slow, "w") as f:
        f.write("#!/bin/sh\nsleep 3\nexec /usr/lib/qemu/virtiofsd \"$@\"\n")
    os.chmod(slow, 0o755)
    env.write_settings(virtiofsd=slow, virtiofsd_style="qemu")
    d = env.define("slowfs")
    p = env.run(d, "cat", "/proc/mounts", check=0)
    assert "nix-store /nix/store virtiofs ro" in p.stdout


def test_children_are_sandboxed(env):
    d = env.define("sandboxed")
    proc = env.popen(d, "sleep", "600")
    env.wait_ready(proc)
    try:
        for what in ("qemu", "fs0"):
            pid = env.pid_of("sandboxed", what)
            status = open(f"/proc/{pid}/status").read()
            assert "\nSeccomp:\t2\n" in status, what
            assert "\nNoNewPrivs:\t1\n" in status, what
        # As many fds as virtiofsd may have: 1048576, or the hard limit
        # where vmd lacks CAP_SYS_RESOURCE to go beyond it.
        limits = open(f"/proc/{env.pid_of('sandboxed', 'fs0')}/limits").read()
        nofile = [l for l in limits.splitlines() if l.startswith("Max open files")][0].split()
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert int(nofile[3]) >= min(1000000, hard), nofile
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_command_not_found(env):
    d = env.define("notfound")
    p = env.run(d, "no-such-command")
    assert p.returncode == 127, p.stderr
    assert "no-such-command" in p.stderr


def test_guest_powers_off_by_itself(env):
    # Without a command, a run lasts until the guest powers off.
    d = env.define("selfoff", kernel_params=["vmd.guest.poweroff-after=1"])
    p = env.run(d, check=0)
    assert "selfoff: ready in " in p.stderr
    assert "Power down" in p.stdout


def test_rust_virtiofsd_style(env):
    fake = os.path.join(env.bin, "virtiofsd-rust")
    shutil.copy(os.path.join(os.path.dirname(__file__), "fake-rust-virtiofsd"), fake)
    env.write_settings(virtiofsd=fake)  # style "auto": probed from --help
    d = env.define("rusty", keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}])
    p = env.run(d, "sh", "-c", "grep -c virtiofs /proc/mounts; echo hi > /etc/ssh/new", check=0)
    assert p.stdout.strip() == "2"
    # The daemons start concurrently, so the order of the lines is not fixed.
    lines = sorted(open(fake + ".args").read().splitlines())
    keydir = os.path.join(env.root, "keys", "rusty", "ssh")
    # Each gets the directory vmd opened, mounted in its own namespace at
    # an empty directory in the run directory, not the path itself.
    run = os.path.join(env.root, "run", "vms", "rusty")
    assert lines == sorted([
        f"--fd=3 --shared-dir={run}/fs0.dir --cache=always --sandbox=namespace --log-level=warn --readonly",
        f"--fd=3 --shared-dir={run}/fs1.dir --cache=never --sandbox=namespace --log-level=warn",
    ])
    assert open(os.path.join(keydir, "new")).read() == "hi\n"
    assert oct(os.stat(keydir).st_mode & 0o777) == "0o700"


def test_command_timeout(env):
    d = env.define("slowcmd")
    t0 = time.time()
    p = env.run(d, "sleep", "600", extra=("--timeout", "2"))
    assert p.returncode == 124, p.stderr
    assert "did not finish within --timeout" in p.stderr
    assert time.time() - t0 < 120


def test_disk_creation_out_of_space(env):
    # A state_dir with 256 KiB free: mkfs runs out of space. One clear
    # error, and no partial image (disks are built unnamed and linked in
    # only when complete).
    state = env.settings["state_dir"]
    os.makedirs(state, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", state], check=True)
    try:
        d = env.define("full", disks=[{"name": "scratch", "size_mib": 512, "mount": "/var"}])
        p = env.run(d, "true")
        assert p.returncode == 2
        assert "No space left on device" in p.stderr, p.stderr
        vmdisks = os.path.join(state, "disks", "full")
        assert not os.path.exists(vmdisks) or os.listdir(vmdisks) == []
        used = subprocess.run(["df", "--output=used", "-k", state], capture_output=True,
                              text=True).stdout.split()[-1]
        assert int(used) == 0, used
    finally:
        subprocess.run(["umount", state], check=True)
