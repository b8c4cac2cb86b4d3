# SPDX-License-Identifier: LGPL-2.1-or-later
"""Swapped under a restart: the checks of key directories and volumes run
when a VM enters its restart backoff, and the processes start when the
delay ends. Whatever is swapped in between (a symlink to an outside
directory or image, a hard link) must not reach the guest: vmd opens what
it hands QEMU and virtiofsd as it starts them, with no symlink followed,
and the restart fails with a message that names what was refused."""

import hashlib
import os
import shutil
import signal
import subprocess

import pytest

VM = "swap"
MARKER = "outside-marker"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree(path):
    """Every file below path with its contents: what the guest could have
    read or written there."""
    out = {}
    for top, _, files in os.walk(path):
        for n in files:
            p = os.path.join(top, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = f.read()
    return out


def ext4_image(path):
    """A volume-sized ext4 image: a guest that mounted it would change its
    superblock, whatever it did then."""
    with open(path, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    subprocess.run([mkfs, "-q", "-F", "-L", "outside", path], check=True)


def swap_for_symlink(path, target):
    """Replaces path (a file or a directory) by a symlink to target, the way
    an attacker would: atomically, by rename."""
    tmp = path + ".swap"
    os.symlink(target, tmp)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rename(path, path + ".moved")
    os.rename(tmp, path)


@pytest.fixture
def swap_env(env, daemons):
    """A VM with a read-write key and a persistent volume, running, its
    QEMU just killed, and now in a restart backoff long enough to swap
    things in. Yields (daemon, paths)."""
    # One restart, then the start limit: a refused restart ends in "failed"
    # instead of a loop, and the delay stays put at 5 s.
    env.write_settings(restart_delay_min_ms=5000, restart_delay_max_ms=5000, start_limit_burst=2,
                       start_limit_interval_s=600)
    d = daemons()
    d.define(VM, keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}],
             disks=[{"name": "data", "size_mib": 64, "mount": "/data", "persistent": True}])
    d.ctl("reload", check=0)
    first = d.wait_state(VM, "running", ready=True)
    d.ctl("exec", VM, "--", "sh", "-c", "echo inside > /etc/ssh/own; echo inside > /data/own; sync", check=0)

    outside = os.path.join(env.root, "outside")
    os.makedirs(os.path.join(outside, "ssh"))
    with open(os.path.join(outside, "ssh", MARKER), "w") as f:
        f.write("host secret\n")
    with open(os.path.join(outside, MARKER), "w") as f:
        f.write("host secret\n")
    ext4_image(os.path.join(outside, "data.img"))
    paths = {
        "outside": outside,
        "keys_vm": os.path.join(env.root, "keys", VM),
        "key": os.path.join(env.root, "keys", VM, "ssh"),
        "volumes_vm": os.path.join(env.root, "state", "volumes", VM),
        "volume": os.path.join(env.root, "state", "volumes", VM, "data.img"),
    }
    assert os.path.isfile(paths["volume"]) and os.path.isdir(paths["key"])

    os.kill(first["pid"], signal.SIGKILL)
    # The key directory and the volume were checked (and the disks made)
    # when it entered the backoff; the restart is 5 s away.
    st = d.wait_state(VM, "backoff", timeout=30)
    assert st["restarts"] == 0
    yield d, paths


def outside_untouched(paths, before, image_sha):
    assert tree(paths["outside"]) == before
    assert sha256(os.path.join(paths["outside"], "data.img")) == image_sha


def ends_refused(d, message, last_exit):
    """The restart failed (and, past the start limit, the VM is failed)
    with message in the log; the guest is not running, so nothing of the
    outside can be read through it either."""
    st = d.wait_state(VM, "failed", timeout=60)
    assert st["restarts"] == 1
    assert st["last_exit"] == last_exit, st
    assert message in d.output(), d.output()
    p = d.ctl("exec", VM, "--", "ls", "-A", "/etc/ssh")
    assert p.returncode != 0 and MARKER not in p.stdout


def snapshot(paths):
    return tree(paths["outside"]), sha256(os.path.join(paths["outside"], "data.img"))


# What is swapped for a symlink, to what under outside, and what the log
# then says: keys_dir/VM/KEY, keys_dir/VM (outside has an "ssh" of its
# own), the volume, and its directory (outside has a data.img).
SYMLINK_SWAPS = [
    ("key", "ssh", "key-ssh: {key}: a symlink on the way below {keys}"),
    ("keys_vm", ".", "key-ssh: {key}: a symlink on the way below {keys}"),
    ("volume", "data.img", "volume data: {volume}: a symlink on the way below {state}"),
    ("volumes_vm", ".", "volume data: {volume}: a symlink on the way below {state}"),
]


@pytest.mark.parametrize("swapped,target,message", SYMLINK_SWAPS, ids=[s[0] for s in SYMLINK_SWAPS])
def test_swapped_for_symlink(env, swap_env, swapped, target, message):
    d, paths = swap_env
    before, image = snapshot(paths)
    swap_for_symlink(paths[swapped], os.path.normpath(os.path.join(paths["outside"], target)))
    message = message.format(keys=os.path.join(env.root, "keys"), state=os.path.join(env.root, "state"), **paths)
    ends_refused(d, f"{VM}: {message} (refused)", "start-failed: Too many levels of symbolic links")
    outside_untouched(paths, before, image)


def test_volume_hardlinked(swap_env):
    d, paths = swap_env
    # A second name for the volume, outside: whatever the guest wrote would
    # show there.
    link = os.path.join(paths["outside"], "linked.img")
    os.link(paths["volume"], link)
    before, image = snapshot(paths)
    ends_refused(d, f"{VM}: volume data: {paths['volume']} has more than one link (hard links are refused)",
                 "start-failed: Too many links")
    outside_untouched(paths, before, image)
    os.unlink(link)
