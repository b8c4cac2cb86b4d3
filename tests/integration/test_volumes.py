# SPDX-License-Identifier: LGPL-2.1-or-later
"""Persistent volumes grow with size_mib, before the next boot, without losing
a byte; they never shrink."""
import hashlib
import os

BLOB = ("head -c 3000000 /dev/urandom > /data/blob && sync && "
        "sha256sum /data/blob | cut -d' ' -f1")
SHOW = "sha256sum /data/blob | cut -d' ' -f1; df -k /data | tail -1 | tr -s ' ' | cut -d' ' -f2"


def vol_def(env, size):
    return env.define("vol", disks=[{"name": "data", "size_mib": size, "mount": "/data", "persistent": True}])


def image_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_volume_grows_and_never_shrinks(env):
    vol = os.path.join(env.settings["state_dir"], "volumes", "vol", "data.img")
    voldir = os.path.dirname(vol)
    blob = env.run(vol_def(env, 32), "sh", "-c", BLOB, check=0).stdout.strip()
    assert len(blob) == 64
    assert os.path.getsize(vol) == 32 << 20

    # Larger: the image and its ext4 grow before the boot; the data stays.
    p = env.run(vol_def(env, 96), "sh", "-c", SHOW, check=0, extra=("-v",))
    digest, kib = p.stdout.split()
    assert digest == blob
    assert int(kib) > 80 * 1024, p.stdout
    assert "volume data grew from 32 to 96 MiB, its file system with it" in p.stderr
    assert os.path.getsize(vol) == 96 << 20
    assert sorted(os.listdir(voldir)) == ["data.img"]

    # The same size again: nothing to do, nothing said.
    p = env.run(vol_def(env, 96), "sh", "-c", SHOW, check=0, extra=("-v",))
    assert p.stdout.split()[0] == blob and "grew" not in p.stderr

    # Smaller: refused before anything is touched.
    before = image_digest(vol)
    p = env.run(vol_def(env, 64), "true")
    assert p.returncode != 0
    assert ("disks[0].size_mib: volume data is 96 MiB; vmd never shrinks a volume (that would cut off "
            "data): keep size_mib at 96 or more") in p.stderr, p.stderr
    assert os.path.getsize(vol) == 96 << 20 and image_digest(vol) == before
    assert sorted(os.listdir(voldir)) == ["data.img"]
    env.assert_clean()


def test_an_interrupted_grow_is_undone_and_done_again(env):
    vol = os.path.join(env.settings["state_dir"], "volumes", "vol", "data.img")
    voldir = os.path.dirname(vol)
    blob = env.run(vol_def(env, 32), "sh", "-c", BLOB, check=0).stdout.strip()

    # What a vmd killed between growing the file and its file system
    # leaves: the marker with the old size, a longer image, an old ext4.
    with open(os.path.join(voldir, ".data.img.grow"), "w") as f:
        f.write(str(32 << 20))
    os.truncate(vol, 64 << 20)

    p = env.run(vol_def(env, 64), "sh", "-c", SHOW, check=0, extra=("-v",))
    digest, kib = p.stdout.split()
    assert digest == blob
    assert int(kib) > 50 * 1024, p.stdout
    assert "grew from 32 to 64 MiB" in p.stderr
    assert sorted(os.listdir(voldir)) == ["data.img"]
    env.assert_clean()


def test_reload_to_a_smaller_volume_keeps_the_vm(env, daemons):
    d = daemons()
    d.define("vol", disks=[{"name": "data", "size_mib": 48, "mount": "/data", "persistent": True}])
    d.ctl("reload", check=0)
    first = d.wait_state("vol", "running", ready=True)
    d.define("vol", disks=[{"name": "data", "size_mib": 16, "mount": "/data", "persistent": True}])
    p = d.ctl("reload", check=1)
    defs = env.settings["definitions_dir"]
    assert (f"{defs}/vol.json: disks[0].size_mib: volume data is 48 MiB; vmd never shrinks a volume"
            in p.stdout), p
    assert "nothing was changed" in p.stderr
    st = d.status("vol")["vol"]
    assert st["state"] == "running" and st["pid"] == first["pid"]
    # The definition kept is the old one: a restart boots it as it was.
    d.ctl("restart", "vol", check=0)
    d.wait_state("vol", "running", ready=True, pid_not=first["pid"])
    vol = os.path.join(env.settings["state_dir"], "volumes", "vol", "data.img")
    assert os.path.getsize(vol) == 48 << 20
