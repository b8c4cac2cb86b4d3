# SPDX-License-Identifier: LGPL-2.1-or-later
"""Erase your darlings: a VM keeps only what the host hands it on purpose
(key directories, persistent volumes); everything else is fresh each boot."""
import hashlib
import os
import subprocess

# What a guest does on first boot with an SSH-style key dir: make a host key
# if there is none, then show it.
FIRST_BOOT = ("[ -s /etc/ssh/ssh_host_key ] || "
              "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/ssh/ssh_host_key; "
              "sync; cat /etc/ssh/ssh_host_key")


def edge_def(d):
    return d.define(
        "edge",
        keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False},
              {"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
        disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"},
               {"name": "data", "size_mib": 64, "mount": "/var/lib/data", "persistent": True}])


def sh(d, vm, script, check=0):
    return d.ctl("exec", vm, "--", "sh", "-c", script, check=check)


def test_seed_scenario(env, daemons):
    d = daemons()
    edge_def(d)
    d.define("other", keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}])
    d.ctl("reload", check=0)
    first = d.wait_state("edge", "running", ready=True)
    d.wait_state("other", "running", ready=True)

    keys = os.path.join(env.root, "keys")
    wg = os.path.join(keys, "edge", "wireguard")
    # vmd generated the WireGuard key on the host, once, with tight modes.
    for path, mode in ((keys, 0o700), (os.path.join(keys, "edge"), 0o700), (wg, 0o700),
                       (os.path.join(wg, "privatekey"), 0o600), (os.path.join(wg, "publickey"), 0o644)):
        assert os.stat(path).st_mode & 0o777 == mode, path
    priv = open(os.path.join(wg, "privatekey")).read()
    assert len(priv) == 45 and priv.endswith("=\n")
    # Never logged: neither the daemon's log nor the VM's holds it.
    assert priv.strip() not in d.output()
    assert priv.strip() not in open(os.path.join(env.settings["log_dir"], "edge.log")).read()

    # The SSH-style key dir (read-write): a key made inside on first boot.
    key = sh(d, "edge", FIRST_BOOT).stdout.strip()
    assert len(key) == 64
    assert open(os.path.join(keys, "edge", "ssh", "ssh_host_key")).read() == key

    # The read-only WireGuard key dir: readable, not writable, even as root.
    assert sh(d, "edge", "cat /etc/wireguard/privatekey").stdout == priv
    p = sh(d, "edge", "echo x > /etc/wireguard/privatekey", check=None)
    assert p.returncode != 0 and "Read-only file system" in p.stdout + p.stderr
    p = sh(d, "edge", "mount -o remount,rw /etc/wireguard && echo x > /etc/wireguard/new", check=None)
    assert p.returncode != 0
    assert open(os.path.join(wg, "privatekey")).read() == priv
    assert not os.path.exists(os.path.join(wg, "new"))

    # Two VMs never see each other's key dirs.
    other_key = sh(d, "other", FIRST_BOOT).stdout.strip()
    assert other_key != key
    mounts = sh(d, "other", "grep virtiofs /proc/mounts").stdout
    assert "key-ssh" in mounts and "key-wireguard" not in mounts
    assert sh(d, "other", "ls -A /etc/ssh").stdout.split() == ["ssh_host_key"]
    assert open(os.path.join(keys, "other", "ssh", "ssh_host_key")).read() == other_key

    # A key rotated on the host (replaced by rename, as tools do) is what the
    # running guest reads next.
    rotated = os.path.join(keys, "edge", "ssh", "rotated")
    with open(rotated + ".tmp", "w") as f:
        f.write("one\n")
    os.rename(rotated + ".tmp", rotated)
    assert sh(d, "edge", "cat /etc/ssh/rotated").stdout == "one\n"
    with open(rotated + ".tmp", "w") as f:
        f.write("two\n")
    os.rename(rotated + ".tmp", rotated)
    assert sh(d, "edge", "cat /etc/ssh/rotated").stdout == "two\n"

    # State: one file on the ephemeral /var, one on the persistent volume.
    sh(d, "edge", "echo gone > /var/eph; echo kept > /var/lib/data/keep; sync")

    # A restart: fresh /var, same volume, same keys.
    d.ctl("restart", "edge", check=0)
    second = d.wait_state("edge", "running", ready=True, pid_not=first["pid"])
    assert sh(d, "edge", FIRST_BOOT).stdout.strip() == key
    assert sh(d, "edge", "cat /etc/wireguard/privatekey").stdout == priv
    assert sh(d, "edge", "cat /var/lib/data/keep").stdout == "kept\n"
    assert sh(d, "edge", "test -e /var/eph", check=None).returncode == 1

    # A reload that changes the VM restarts it: the keys stay.
    d.define("edge", **{**json_of(env, "edge"), "memory_mib": 320})
    assert "changed: edge" in d.ctl("reload", check=0).stdout
    d.wait_state("edge", "running", ready=True, pid_not=second["pid"])
    assert sh(d, "edge", FIRST_BOOT).stdout.strip() == key
    assert sh(d, "edge", "cat /var/lib/data/keep").stdout == "kept\n"

    # Removed from the config: stopped, its ephemeral disk gone, its volume
    # and key dirs kept. Added again: everything it had is back.
    vol = os.path.join(env.root, "state", "volumes", "edge", "data.img")
    d.undefine("edge")
    assert "removed: edge" in d.ctl("reload", check=0).stdout
    # status stops listing it at once; the teardown takes a moment longer.
    d.wait_for(lambda: not os.path.exists(env.run_dir("edge")), "edge to go")
    assert os.path.exists(vol)
    assert not os.path.exists(os.path.join(env.root, "state", "disks", "edge"))
    assert open(os.path.join(wg, "privatekey")).read() == priv
    edge_def(d)
    assert "added: edge" in d.ctl("reload", check=0).stdout
    d.wait_state("edge", "running", ready=True)
    assert sh(d, "edge", "cat /var/lib/data/keep; cat /etc/ssh/ssh_host_key").stdout == "kept\n" + key
    assert sh(d, "edge", "cat /etc/wireguard/privatekey").stdout == priv
    assert sh(d, "edge", "test -e /var/eph", check=None).returncode == 1


def json_of(env, name):
    import json
    with open(os.path.join(env.settings["definitions_dir"], f"{name}.json")) as f:
        d = json.load(f)
    d.pop("name")
    return d


def test_key_source_that_is_a_symlink_is_refused(env):
    real = os.path.join(env.root, "real")
    os.mkdir(real)
    link = os.path.join(env.root, "link")
    os.symlink(real, link)
    d = env.define("sneaky", keys=[{"name": "k", "target": "/etc/k", "source": link}])
    p = env.run(d, "true")
    assert p.returncode == 2  # found at start, not by vmd check
    assert "is not a directory (symlinks are refused)" in p.stderr
    assert os.listdir(real) == []


def test_sources_in_swept_directories_are_refused(env):
    # vmd empties these at every start and stop: a guest must not keep
    # anything there, and vmd must not create anything there for it.
    inside = os.path.join(env.root, "state", "disks", "victim")
    os.makedirs(inside)
    for fields, what in (
            ({"keys": [{"name": "k", "target": "/etc/k", "source": f"{inside}/k"}]}, "keys[0].source"),
            ({"shares": [{"tag": "s", "source": inside, "target": "/s"}]}, "shares[0].source"),
            ({"disks": [{"name": "d", "mount": "/d", "base": f"{inside}/base.img"}]}, "disks[0].base")):
        d = env.define("swept", **fields)
        p = env.run(d, "true")
        assert p.returncode == 2, p.stderr
        assert f"swept: {what}: {inside}" in p.stderr
        assert "which vmd empties at every start and stop" in p.stderr
    assert os.listdir(inside) == []
    os.rmdir(inside)


def make_base_image(env, fmt):
    """A small ext4 image holding one file, in raw or qcow2 format."""
    tree = os.path.join(env.root, "tree")
    os.makedirs(tree, exist_ok=True)
    with open(os.path.join(tree, "hello"), "w") as f:
        f.write("from the base image\n")
    raw = os.path.join(env.root, "base.raw")
    subprocess.run(["truncate", "-s", "32M", raw], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, raw], check=True)
    if fmt == "raw":
        return raw
    qcow = os.path.join(env.root, "base.qcow2")
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow], check=True)
    os.unlink(raw)
    return qcow


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_overlay_on_a_base_image(env):
    for fmt in ("raw", "qcow2"):
        base = make_base_image(env, fmt)
        before = sha256(base)
        d = env.define("layered", disks=[{"name": "tools", "mount": "/opt", "base": base, "base_format": fmt}])
        script = "cat /opt/hello; ls /opt; echo changed > /opt/hello; echo new > /opt/new; sync; cat /opt/hello"
        for _ in range(2):
            # Every boot starts from the base: the last boot's writes are gone.
            p = env.run(d, "sh", "-c", script, check=0)
            assert p.stdout.splitlines()[0] == "from the base image", p.stdout
            assert "new" not in p.stdout.splitlines()[1:-1]
            assert p.stdout.splitlines()[-1] == "changed"
        assert sha256(base) == before
        assert not os.path.exists(os.path.join(env.root, "state", "disks", "layered"))
        os.unlink(base)


def test_overlay_base_missing(env):
    d = env.define("nobase", disks=[{"name": "tools", "mount": "/opt", "base": "/nonexistent/base.img"}])
    p = env.run(d, "true")
    assert p.returncode == 2
    assert "nobase: disks[0].base: /nonexistent/base.img: No such file or directory" in p.stderr


def test_shares_read_only_and_read_write(env):
    ro = os.path.join(env.root, "ro")
    rw = os.path.join(env.root, "rw")
    os.mkdir(ro)
    os.mkdir(rw)
    with open(os.path.join(ro, "hello"), "w") as f:
        f.write("from the host\n")
    # A symlink to a share is followed (unlike a key's): virtiofsd gets
    # the directory itself.
    link = os.path.join(env.root, "rw-link")
    os.symlink(rw, link)
    d = env.define("sharing", shares=[
        {"tag": "ro", "source": ro, "target": "/mnt/ro"},
        {"tag": "rw", "source": link, "target": "/mnt/rw", "read_only": False}])
    p = env.run(d, "sh", "-c", "cat /mnt/ro/hello; echo written > /mnt/rw/out; "
                "echo x > /mnt/ro/evil || echo refused; "
                "mount -o remount,rw /mnt/ro && echo x > /mnt/ro/evil2 || echo refused again; sync", check=0)
    assert p.stdout.splitlines() == ["from the host", "refused", "refused again"], p.stdout + p.stderr
    assert open(os.path.join(rw, "out")).read() == "written\n"
    assert sorted(os.listdir(ro)) == ["hello"]
