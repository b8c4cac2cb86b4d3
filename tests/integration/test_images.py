# SPDX-License-Identifier: LGPL-2.1-or-later
"""Container images as VMs (issue 14): images built here (ociimage.py, no
registry), in both forms, run by `vmd run` and the daemon under TCG.

Boots are what costs (a few seconds of TCG each), so each boot checks
several things: 3 in test_run_config_status_and_second_boot, 3 in
test_daemon_exec_keys_volume_restart, 1 in test_network_and_stop_signal.
Everything else here (both forms, refs, the cache commands, the hostile
corpus, vmd check) needs no boot."""

import json
import os
import re
import shutil
import tempfile
import time

import pytest

import ociimage as oi
from conftest import processes_mentioning
from test_net import netns, networks, start_in  # noqa: F401 (netns: a fixture)

# The standard image's Cmd: what the entrypoint sees, one fact a line.
REPORT = "; ".join([
    "echo uid=$(id -u)", "echo gid=$(id -g)", "echo groups=$(id -G)", "echo pwd=$(pwd)",
    "echo marker=$MARKER", "echo entry=$ENTRY_RAN", "echo motd=$(cat /etc/motd)",
    "test -e /etc/removed && echo removed=present || echo removed=gone",
    "test -e /srv/gone && echo srvgone=present || echo srvgone=gone",
    "echo data=$(ls -A /opt/data)", "echo link=$(cat /usr/share/app/b)",
    "echo secret=$(cat /home/app/secret)",
    "touch /home/app/new && echo home=writable",
    "touch /not-for-app 2>/dev/null && echo rootdir=writable || echo rootdir=refused",
    "exit 3"])

# A service that fails on its first boot and runs from its second: the
# count of boots is on the persistent /var.
COUNTER = ("n=$(cat /var/boots 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/boots.new; "
           "mv /var/boots.new /var/boots; sync; echo boot=$n; [ $n -ge 2 ] || exit 3; exec sleep 100000")
# READY comes once the entrypoint has started, not once it has counted.
COUNTED = "i=0; until grep -qx 2 /var/boots 2>/dev/null; do i=$((i+1)); [ $i -lt 600 ] || break; usleep 100000; done"

WEB = ("trap 'echo stop-signal=USR1; exit 0' USR1; httpd -p 8080 -h /srv/www; echo serving; "
       "while :; do sleep 1 & wait $!; done")


class Img:
    def __init__(self, path, key, ref=None):
        self.path, self.key, self.ref = path, key, ref


@pytest.fixture(scope="module")
def images():
    """The standard image (ociimage.standard_layers) in every form, with a
    config each: layout-gzip (user app, Cmd REPORT), layout-tar (StopSignal
    SIGUSR1), archive (tagged vmd-test:one), archive-gz (user 0:0, tagged
    vmd-test:root), and multi: a layout holding two images (refs
    vmd-test:one and vmd-test:two, the second with a third layer). Key: the
    cache entry's name (a layout's: its manifest's digest; an archive's:
    its config's)."""
    top = tempfile.mkdtemp(prefix="vmd-images-", dir="/tmp")
    layers = oi.standard_layers()
    got = {"layers": layers}
    r = oi.build_layout(f"{top}/layout-gzip", layers, oi.standard_config(cmd=["sh", "-c", REPORT]))
    got["layout-gzip"] = Img(f"{top}/layout-gzip", "sha256-" + r["manifest"])
    r = oi.build_layout(f"{top}/layout-tar", layers, oi.standard_config(stop_signal="SIGUSR1"), compress="none")
    got["layout-tar"] = Img(f"{top}/layout-tar", "sha256-" + r["manifest"])
    r = oi.build_docker_archive(f"{top}/archive.tar", layers, oi.standard_config(), repo_tag="vmd-test:one")
    got["archive"] = Img(f"{top}/archive.tar", "sha256-" + r["config"], "vmd-test:one")
    r = oi.build_docker_archive(f"{top}/archive-root.tar.gz", layers, oi.standard_config(user="0:0"),
                                repo_tag="vmd-test:root", gzip_it=True)
    got["archive-gz"] = Img(f"{top}/archive-root.tar.gz", "sha256-" + r["config"], "vmd-test:root")
    one = oi.build_layout(f"{top}/multi", layers, oi.standard_config(), ref="vmd-test:one")
    two = oi.build_layout(f"{top}/multi", layers + [[oi.dir_("etc"), oi.file_("etc/which", "two\n")]],
                          oi.standard_config(), ref="vmd-test:two")
    got["multi-one"] = Img(f"{top}/multi", "sha256-" + one["manifest"], "vmd-test:one")
    got["multi-two"] = Img(f"{top}/multi", "sha256-" + two["manifest"], "vmd-test:two")
    yield got
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def ienv(env, image_closure):
    env.write_settings(image_system=image_closure)
    return env


def image(env, *args, check=None, timeout=180):
    return env.vmd("-c", env.config, "image", *args, check=check, timeout=timeout)


def said(p):
    """What a vmd command said, wherever (errors of a command's input go to
    stdout, as vmd check's do; the rest to stderr)."""
    return p.stdout + p.stderr


def cache_dir(env):
    return os.path.join(env.settings["state_dir"], "images")


def cache_entries(env):
    """The cache's complete entries and partial ones."""
    try:
        names = os.listdir(cache_dir(env))
    except FileNotFoundError:
        return [], []
    return sorted(n for n in names if n.startswith("sha256-")), sorted(n for n in names if n.startswith(".tmp-"))


def rootfs(env, key):
    return os.path.join(cache_dir(env), key, "rootfs")


def facts(out):
    """The KEY=value lines of a console output (kernel lines and \\r
    around them ignored)."""
    f = {}
    for line in out.replace("\r", "").splitlines():
        m = re.match(r"^([a-z]+)=(.*)$", line)
        if m:
            f[m.group(1)] = m.group(2).strip()
    return f


def expected_tree(layers, setuid=False):
    tree = oi.flatten(layers)
    if not setuid:
        tree = {p: (k, m & ~0o6000 if k == "file" else m, u, g, c) for p, (k, m, u, g, c) in tree.items()}
    return tree


def test_run_config_status_and_second_boot(ienv, images):
    img = images["layout-gzip"]
    d = ienv.define("img", image=img.path)
    # Boot 1: the image's own Entrypoint and Cmd, as User app in its
    # WorkingDir with its Env, over both layers; Cmd exits 3.
    p = ienv.run(d)
    assert p.returncode == 3, p.stdout + p.stderr
    assert re.search(rf"image {img.key}: unpacked [0-9.]+ MiB in [0-9.]+ s", p.stderr), p.stderr
    f = facts(p.stdout)
    assert (f.get("uid"), f.get("gid"), f.get("pwd")) == ("1000", "1000", "/home/app"), p.stdout
    # Supplementary groups from the image's /etc/group, as docker does.
    assert f["groups"].split() == ["1000", "50"], p.stdout
    assert (f["marker"], f["entry"]) == ("from-the-image", "yes"), p.stdout
    # Layer 1 replaced a file, whited out a file and a directory, made
    # /opt/data opaque (its new file stays although listed before the
    # marker), and hard-linked a file.
    assert f["motd"] == "from layer one"
    assert (f["removed"], f["srvgone"]) == ("gone", "gone"), p.stdout
    assert f["data"] == "new", p.stdout
    assert f["link"] == "linked"
    # Ownership kept: app reads its 0600 file and writes its home, and the
    # root directory is not app's.
    assert (f["secret"], f["home"], f["rootdir"]) == ("only app reads this", "writable", "refused"), p.stdout
    assert cache_entries(ienv) == ([img.key], [])
    ino = os.stat(rootfs(ienv, img.key)).st_ino

    # Boot 2, the same image under another definition, with cmd, env and
    # workdir of its own: nothing unpacked; env merged over the image's by
    # name; the Entrypoint stays; exit 0.
    over = ienv.define("over", image=img.path, workdir="/tmp", env=["MARKER=from-the-definition", "EXTRA=added"],
                       cmd=["sh", "-c", "echo pwd=$(pwd); echo marker=$MARKER; echo extra=$EXTRA; "
                            "echo path=$PATH; echo entry=$ENTRY_RAN"])
    p = ienv.run(over)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"image {img.key}: cached" in p.stderr and "unpacked" not in p.stderr, p.stderr
    f = facts(p.stdout)
    assert (f.get("pwd"), f.get("marker"), f.get("extra")) == ("/tmp", "from-the-definition", "added"), p.stdout
    assert (f["path"], f["entry"]) == (oi.PATH, "yes"), p.stdout

    # Boot 3: `-- CMD` replaces Cmd (the Entrypoint still runs), its output
    # is vmd's, and a signal's death is 128+N.
    p = ienv.run(d, "sh", "-c", "echo replaced=$ENTRY_RAN; kill -9 $$")
    assert p.returncode == 128 + 9, p.stdout + p.stderr
    assert facts(p.stdout).get("replaced") == "yes", p.stdout
    assert "uid" not in facts(p.stdout)
    assert f"image {img.key}: cached" in p.stderr

    # The entry was neither rebuilt nor touched.
    assert cache_entries(ienv) == ([img.key], [])
    assert os.stat(rootfs(ienv, img.key)).st_ino == ino


def list_entries(env):
    """vmd image list: key -> fields (key, in-use, MiB, source)."""
    out = image(env, "list", check=0).stdout
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("sha256-")}


def test_forms_refs_and_cache_commands(ienv, images):
    layers = images["layers"]
    want = expected_tree(layers)
    # Every form unpacks to the same tree: the layers applied as the OCI
    # spec says, owners and modes kept, setuid and setgid bits stripped.
    for form in ("layout-gzip", "layout-tar", "archive", "archive-gz"):
        img = images[form]
        partial = os.path.join(cache_dir(ienv), f".tmp-{img.key[7:]}-0123abcd")
        if os.path.isdir(cache_dir(ienv)):
            # What an unpack killed halfway leaves: never trusted, removed,
            # and the entry unpacked afresh.
            os.makedirs(os.path.join(partial, "rootfs", "bin"))
            with open(os.path.join(partial, "rootfs", "bin", "busybox"), "w") as f:
                f.write("half\n")
        p = image(ienv, "unpack", img.path, check=0)
        assert p.stdout.strip() == img.key, (form, p.stdout)
        assert f"image {img.key}: unpacked" in p.stderr, (form, p.stderr)
        assert not os.path.exists(partial) and cache_entries(ienv)[1] == [], form
        got = oi.scan(rootfs(ienv, img.key))
        assert got == want, (form, sorted(set(got.items()) ^ set(want.items())))
        # The key also from a definition naming the image, and a second
        # unpack unpacks nothing.
        d = ienv.define("form", image=img.path)
        p = image(ienv, "unpack", d, check=0)
        assert p.stdout.strip() == img.key and f"image {img.key}: cached" in p.stderr, (form, p.stderr)
    # A tag in a docker-archive.
    img = images["archive"]
    assert image(ienv, "unpack", img.path, "--ref", "vmd-test:one", check=0).stdout.strip() == img.key
    p = image(ienv, "unpack", img.path, "--ref", "vmd-test:nope")
    assert p.returncode != 0 and "vmd-test:nope" in said(p), said(p)

    # A layout of two images: one must be named, by ref.
    p = image(ienv, "unpack", images["multi-one"].path)
    assert p.returncode != 0 and "name one" in said(p), said(p)
    two = images["multi-two"]
    assert image(ienv, "unpack", two.path, "--ref", two.ref, check=0).stdout.strip() == two.key
    with open(os.path.join(rootfs(ienv, two.key), "etc", "which")) as f:
        assert f.read() == "two\n"
    d = ienv.define("refd", image=two.path, image_ref="vmd-test:one")
    assert image(ienv, "unpack", d, check=0).stdout.strip() == images["multi-one"].key
    assert not os.path.exists(os.path.join(rootfs(ienv, images["multi-one"].key), "etc", "which"))

    keys = sorted({images[f].key for f in ("layout-gzip", "layout-tar", "archive", "archive-gz", "multi-one",
                                           "multi-two")})
    assert cache_entries(ienv) == (keys, [])
    listed = list_entries(ienv)
    assert sorted(listed) == keys
    assert images["layout-tar"].path in listed[images["layout-tar"].key]
    assert all(v[1] == "no" for v in listed.values()), listed

    # image_setuid: the bits kept; image_max_mib: the total counted.
    kept = images["layout-tar"]
    image(ienv, "remove", kept.key, check=0)
    assert kept.key not in cache_entries(ienv)[0]
    ienv.write_settings(image_setuid=True)
    image(ienv, "unpack", kept.path, check=0)
    assert oi.scan(rootfs(ienv, kept.key)) == expected_tree(layers, setuid=True)
    assert os.stat(os.path.join(rootfs(ienv, kept.key), "usr/bin/suid-tool")).st_mode & 0o7777 == 0o4755
    ienv.write_settings(image_setuid=False, image_max_mib=1)
    image(ienv, "remove", kept.key, check=0)
    p = image(ienv, "unpack", kept.path)
    assert p.returncode != 0 and "bin/busybox" in said(p), said(p)
    assert kept.key not in cache_entries(ienv)[0] and cache_entries(ienv)[1] == []
    ienv.write_settings(image_max_mib=8192)

    # prune: what no definition in definitions_dir names goes; the rest
    # stays. --dry-run says what would go and removes nothing.
    defs = ienv.settings["definitions_dir"]
    os.makedirs(defs, exist_ok=True)
    with open(os.path.join(defs, "kept.json"), "w") as f:
        json.dump({"name": "kept", "image": images["archive"].path}, f)
    before = cache_entries(ienv)[0]
    p = image(ienv, "prune", "--dry-run", check=0)
    gone = [k for k in before if k != images["archive"].key]
    assert all(k in p.stdout for k in gone) and images["archive"].key not in p.stdout, p.stdout
    assert cache_entries(ienv)[0] == before
    image(ienv, "prune", check=0)
    assert cache_entries(ienv) == ([images["archive"].key], [])
    assert sorted(list_entries(ienv)) == [images["archive"].key]
    p = image(ienv, "remove", "sha256-" + "0" * 64)
    assert p.returncode != 0


def tree_snapshot(top, skip):
    """Every path below top but not below those in skip, with what it is."""
    snap = {}
    for d, dirs, files in os.walk(top):
        if any(d == s or d.startswith(s + "/") for s in skip):
            dirs[:] = []
            continue
        for n in dirs + files:
            path = os.path.join(d, n)
            if path not in skip:
                st = os.lstat(path)
                snap[path] = (st.st_mode, st.st_size, st.st_nlink, st.st_mtime_ns)
    return snap


def test_hostile_layers_are_refused(ienv):
    outside = os.path.join(ienv.root, "outside")
    os.makedirs(outside)
    victim = os.path.join(outside, "victim")
    with open(victim, "w") as f:
        f.write("untouched\n")
    # vmd makes the cache before the snapshot (an unpack and a removal),
    # so the snapshot can cover everything next to it.
    built = os.path.join(ienv.root, "hostile")
    r = oi.build_layout(os.path.join(built, "benign"), [[oi.file_("a", "a")]], oi.standard_config())
    image(ienv, "unpack", os.path.join(built, "benign"), check=0)
    image(ienv, "remove", "sha256-" + r["manifest"], check=0)
    assert cache_entries(ienv) == ([], [])
    cases = oi.hostile_cases(outside, victim)
    paths = []
    for name, layers, what in cases:
        lay = os.path.join(built, name)
        oi.build_layout(lay, layers, oi.standard_config())
        arch = os.path.join(built, name + ".tar")
        oi.build_docker_archive(arch, layers, oi.standard_config())
        paths += [(name, lay, what), (name, arch, what)]
    # A docker-archive whose layer is not the one its config's diff_ids
    # name.
    swapped = os.path.join(built, "swapped.tar")
    oi.build_docker_archive(swapped, [[oi.file_("a", "a")]], oi.standard_config(),
                            layer_data=[oi.layer_tar([oi.file_("a", "b")])])
    passwd = os.stat("/etc/passwd")
    # vmd's own: the cache, logs, run files.
    skip = (cache_dir(ienv), ienv.settings["log_dir"], ienv.settings["run_dir"])
    snap = tree_snapshot(ienv.root, skip)
    for name, path, what in paths:
        t0 = time.time()
        p = image(ienv, "unpack", path, timeout=120)
        assert p.returncode != 0, (name, path, said(p))
        # "layer N (DIGEST): PATH: reason"
        assert re.search(r"layer \d+ ", said(p)) and what in said(p), (name, path, said(p))
        # Bombs are refused from their headers, not after writing them.
        assert time.time() - t0 < 60, name
        assert cache_entries(ienv) == ([], []), (name, os.listdir(cache_dir(ienv)))
    p = image(ienv, "unpack", swapped)
    assert p.returncode != 0 and re.search(r"layer \d+ ", said(p)) and "layer.tar" in said(p), said(p)
    assert cache_entries(ienv) == ([], [])
    # Nothing written outside the cache: not next to it, not in the
    # outside directory, not where the process runs, not in /.
    assert tree_snapshot(ienv.root, skip) == snap
    assert os.listdir(outside) == ["victim"]
    with open(victim) as f:
        assert f.read() == "untouched\n"
    after = os.stat("/etc/passwd")
    assert (after.st_ino, after.st_nlink, after.st_size, after.st_mtime_ns) == \
        (passwd.st_ino, passwd.st_nlink, passwd.st_size, passwd.st_mtime_ns)
    for d in ("/", os.getcwd(), ienv.settings["state_dir"], cache_dir(ienv)):
        assert not [n for n in os.listdir(d) if n.startswith("escaped-")], d


def bad_layout(env, name, change):
    """The standard image's layout (one small layer), then change(dir,
    digests) breaks it."""
    path = os.path.join(env.root, "bad", name)
    r = oi.build_layout(path, [[oi.dir_("etc"), oi.file_("etc/passwd", oi.PASSWD)]], oi.standard_config(user="root"))
    change(path, r)
    return path


def blob(path, hexd):
    return os.path.join(path, "blobs", "sha256", hexd)


def corrupt_manifest(path, r):
    """A manifest that is not JSON, its digest correct (the index names
    the new blob)."""
    bad = b"{ this is not json"
    hexd = oi.sha256(bad)
    with open(blob(path, hexd), "wb") as f:
        f.write(bad)
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0].update(digest=f"sha256:{hexd}", size=len(bad))
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)


def tamper_config(path, r):
    with open(blob(path, r["config"]), "ab") as f:
        f.write(b" ")


def test_check_reports_bad_images(ienv):
    plain = os.path.join(ienv.root, "not-an-image.txt")
    with open(plain, "w") as f:
        f.write("hello\n")
    empty = os.path.join(ienv.root, "empty-dir")
    os.makedirs(empty)
    good = bad_layout(ienv, "good", lambda p, r: None)
    cases = {
        "missing": ({"image": "/nonexistent/image"}, "No such file or directory"),
        "plain": ({"image": plain}, ""),
        "emptydir": ({"image": empty}, ""),
        "corrupt": ({"image": bad_layout(ienv, "corrupt", corrupt_manifest)}, "not valid JSON"),
        "tampered": ({"image": bad_layout(ienv, "tampered", tamper_config)}, "does not match its digest"),
        "noref": ({"image": good, "image_ref": "vmd-test:nope"}, "vmd-test:nope"),
        "relative": ({"image": "relative/path"}, ""),
    }
    for name, (fields, reason) in cases.items():
        d = ienv.define(name, **fields)
        p = ienv.vmd("check", "-c", ienv.config, d)
        assert p.returncode == 1, (name, p.stdout, p.stderr)
        lines = p.stdout.splitlines()
        assert lines and all(l.startswith(f"{d}: image: ") for l in lines), (name, p.stdout)
        assert reason in p.stdout, (name, p.stdout)
    # Neither a system nor an image, or both.
    for name, fields in (("neither", {}), ("both", {"image": good, "system": ienv.closure})):
        d = os.path.join(ienv.root, f"{name}.json")
        with open(d, "w") as f:
            json.dump({"name": name, **fields}, f)
        p = ienv.vmd("check", "-c", ienv.config, d)
        assert p.returncode == 1 and p.stdout.startswith(f"{d}: "), (name, p.stdout)
        assert "image" in p.stdout and "system" in p.stdout, (name, p.stdout)
    # The good one passes, with its overrides.
    d = ienv.define("fine", image=good, cmd=["true"], env=["A=b"], workdir="/etc")
    ienv.vmd("check", "-c", ienv.config, d, check=0)
    assert cache_entries(ienv)[1] == []


def test_unknown_user_is_reported_once_unpacked(ienv):
    """A User the image's /etc/passwd does not have: found in the unpacked
    tree (vmd check reads and verifies an image, but unpacks nothing), so
    vmd check says so once the image is in the cache, and vmd run refuses
    to boot it."""
    path = os.path.join(ienv.root, "ghost")
    oi.build_layout(path, [[oi.dir_("etc"), oi.file_("etc/passwd", oi.PASSWD), oi.file_("etc/group", oi.GROUP)]],
                    oi.standard_config(user="ghost"))
    d = ienv.define("ghost", image=path)
    image(ienv, "unpack", d, check=0)
    p = ienv.vmd("check", "-c", ienv.config, d)
    assert p.returncode == 1 and p.stdout.startswith(f"{d}: image: ") and "ghost" in p.stdout, p.stdout
    p = ienv.run(d)
    assert p.returncode != 0 and "ghost" in said(p), said(p)
    assert "ready in" not in p.stderr


def test_daemon_exec_keys_volume_restart(ienv, images, daemons):
    img = images["archive-gz"]  # User 0:0, a gzip-compressed docker-archive
    d = daemons()
    d.define("svc", image=img.path, image_ref=img.ref, restart="on-failure", cmd=["sh", "-c", COUNTER],
             keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}],
             disks=[{"name": "var", "size_mib": 64, "mount": "/var", "persistent": True}])
    # Exits 0 at once: a success, not restarted under on-failure.
    d.define("once", image=img.path, restart="on-failure", cmd=["true"])
    d.ctl("reload", check=0)

    # svc's first boot exits 3 (a failure): restarted; its second counts
    # 2 on the volume and stays up.
    def restarted():
        s = d.status().get("svc")
        return s if s and s["restarts"] >= 1 and s["state"] == "running" and s["ready"] else None
    st = d.wait_for(restarted, "svc to be restarted and ready", timeout=240)
    assert st["restarts"] == 1, st
    assert re.search(r"\b3\b", st["last_exit"] or ""), st
    d.wait_for(lambda: "once: not restarting (restart: on-failure)" in d.output(), "once to end")
    once = d.status()["once"]
    assert once["state"] == "stopped" and once["restarts"] == 0, once

    # vmd exec: root, in the image's root, with its env and workdir; the
    # key directory at /etc/ssh both ways; the volume kept the count.
    keydir = os.path.join(ienv.settings["keys_dir"], "svc", "ssh")
    with open(os.path.join(keydir, "from-host"), "w") as f:
        f.write("host\n")
    p = d.ctl("exec", "svc", "--", "sh", "-c", f"{COUNTED}; id -u; pwd; echo $MARKER; cat /var/boots; cat /etc/motd; "
              "cat /etc/ssh/from-host; echo guest > /etc/ssh/from-guest; sync; exit 5")
    assert p.returncode == 5, p.stdout + p.stderr
    assert p.stdout.splitlines() == ["0", "/home/app", "from-the-image", "2", "from layer one", "host"], p.stdout
    with open(os.path.join(keydir, "from-guest")) as f:
        assert f.read() == "guest\n"
    assert d.ctl("exec", "svc", "--", "no-such-command").returncode == 127

    # One unpack for three boots of two VMs (said in the daemon's log, or
    # in the VMs' logs, or both).
    vm_logs = "".join(open(os.path.join(ienv.settings["log_dir"], f"{n}.log")).read() for n in ("svc", "once"))
    unpacks = [len(re.findall(rf"image {img.key}: unpacked", log)) for log in (d.output(), vm_logs)]
    assert max(unpacks) == 1, (unpacks, d.output(), vm_logs)
    assert cache_entries(ienv) == ([img.key], [])

    # In use: listed so, not removed, not pruned.
    assert list_entries(ienv)[img.key][1] == "yes"
    p = image(ienv, "remove", img.key)
    assert p.returncode != 0 and f"{img.key}: a VM uses it" in said(p), said(p)
    image(ienv, "prune", check=0)
    assert cache_entries(ienv) == ([img.key], [])
    d.ctl("exec", "svc", "--", "test", "-x", "/bin/busybox", check=0)

    # Gone from the definitions: prunable.
    d.undefine("svc")
    d.undefine("once")
    d.ctl("reload", check=0)
    d.wait_for(lambda: not os.path.exists(ienv.run_dir("svc")), "svc to go")
    assert img.key in image(ienv, "prune", "--dry-run", check=0).stdout
    assert cache_entries(ienv) == ([img.key], [])
    image(ienv, "prune", check=0)
    assert cache_entries(ienv) == ([], [])
    assert d.stop() == 0


def test_network_and_stop_signal(ienv, images, daemons, netns):  # noqa: F811
    img = images["layout-tar"]  # user app, StopSignal SIGUSR1, uncompressed layers
    tag = os.urandom(3).hex()
    bridge, _, nets = networks(tag)
    ienv.write_settings(networks={bridge: nets[bridge]})
    d = start_in(netns, daemons, ienv)
    d.define("web", image=img.path, cmd=["sh", "-c", WEB], network={"bridge": bridge, "address": "10.0.0.2/24"})
    d.ctl("reload", check=0)
    d.wait_state("web", "running", ready=True)
    # The namespace reaches the VM: ping, and the image's web server.
    fetch = ("import urllib.request; print(urllib.request.urlopen('http://10.0.0.2:8080/index.html', "
             "timeout=5).read().decode(), end='')")
    got = None
    for _ in range(60):
        # busybox-static: the guest build needs it, iputils may be missing.
        ping = netns.run("/bin/busybox", "ping", "-c", "1", "-W", "2", "10.0.0.2", check=False)
        got = netns.run("python3", "-c", fetch, check=False)
        if ping.returncode == 0 and got.returncode == 0:
            break
        time.sleep(1)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert got.stdout == "hello from an image\n", got.stdout + got.stderr
    # Inside: the hostname and the address the definition gives, and the
    # bridge's address reachable.
    p = d.ctl("exec", "web", "--", "sh", "-c", "hostname; ip -o -4 addr show dev eth0; ping -c 1 -W 5 10.0.0.1")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0] == "web" and "inet 10.0.0.2/24" in p.stdout, p.stdout
    # A graceful stop is the image's StopSignal to the entrypoint.
    d.ctl("stop", "web", check=0)
    log = open(os.path.join(ienv.settings["log_dir"], "web.log")).read()
    assert "stop-signal=USR1" in log, log
    assert d.stop() == 0


def unpackers(env):
    """Processes unpacking into env's cache: the helper the daemon runs
    and its chrooted child (same command line)."""
    return processes_mentioning(f"unpack --cache-dir {cache_dir(env)} ")


def timed_status(d, name):
    t0 = time.monotonic()
    st = d.status().get(name)
    return st, time.monotonic() - t0


def test_daemon_unpacks_in_a_helper(ienv, daemons):
    # A big layer (incompressible, uncompressed: the unpacker hashes it
    # and writes it) makes the first boot's unpack take seconds.
    top = tempfile.mkdtemp(prefix="vmd-bigimage-", dir="/tmp")
    try:
        big = [oi.dir_("opt"), oi.file_("opt/big", os.urandom(1 << 20) * 320)]
        r = oi.build_layout(f"{top}/big", oi.standard_layers() + [big],
                            oi.standard_config(user="0:0", cmd=["sh", "-c", "echo up; exec sleep 100000"]),
                            compress="none")
        key = "sha256-" + r["manifest"]
        del big
        d = daemons()
        d.define("big", image=f"{top}/big", restart="always")
        # The reload starts it; the unpack runs in a helper, not in the
        # daemon: the reload, and status during the unpack, answer at once.
        t0 = time.monotonic()
        d.ctl("reload", check=0)
        assert time.monotonic() - t0 < 1.0
        st, took = timed_status(d, "big")
        assert took < 1.0 and st["state"] == "preparing", (took, st)
        d.wait_for(lambda: unpackers(ienv), "the unpack helper", timeout=10)
        for _ in range(5):
            st, took = timed_status(d, "big")
            assert took < 1.0 and st["state"] == "preparing" and not st["ready"], (took, st)
            time.sleep(0.1)
        assert unpackers(ienv), "the unpack ended too soon to show anything"

        # A stop ends the unpack: no process left, nothing in the cache
        # but a partial that the next unpack removes; not restarted.
        t0 = time.monotonic()
        d.ctl("stop", "big", check=0)
        assert time.monotonic() - t0 < 5.0
        assert d.status()["big"]["state"] == "stopped"
        d.wait_for(lambda: not unpackers(ienv), "the unpack to be gone", timeout=5)
        assert cache_entries(ienv)[0] == []
        time.sleep(0.5)
        assert d.status()["big"]["state"] == "stopped"

        # Started again: unpacked (said with its size and time), booted.
        d.ctl("start", "big", check=0, timeout=240)
        st = d.status()["big"]
        assert st["state"] == "running" and st["ready"], st
        assert cache_entries(ienv) == ([key], [])
        with open(os.path.join(ienv.settings["log_dir"], "big.log")) as f:
            log = f.read()
        assert re.search(rf"image {key}: unpacked 3[0-9][0-9]\.[0-9] MiB in [0-9.]+ s", log), log
        d.ctl("stop", "big", check=0)

        # A failed unpack is a failed start, the helper's message its reason.
        bad = f"{top}/bad"
        r = oi.build_layout(bad, [[oi.file_("/etc/escaped-absolute", "x")]], oi.standard_config())
        d.define("bad", image=bad, restart="never")
        d.ctl("reload", check=0)
        st = d.wait_for(lambda: (s := d.status().get("bad")) and s["last_exit"] and s, "bad to fail", timeout=30)
        assert st["state"] == "stopped" and "start-failed" in st["last_exit"], st
        assert "escaped-absolute" in st["last_exit"], st
        with open(os.path.join(ienv.settings["log_dir"], "bad.log")) as f:
            assert "escaped-absolute" in f.read()
        assert not unpackers(ienv)

        # The daemon going down during an unpack leaves no process behind.
        image(ienv, "remove", key, check=0)
        d.define("big", image=f"{top}/big", restart="always", cmd=["true"])
        d.ctl("reload", check=0)
        d.wait_for(lambda: unpackers(ienv), "the unpack helper", timeout=10)
        assert d.status()["big"]["state"] == "preparing"
        d.stop()
        assert d.proc.returncode == 0, d.output()
        end = time.time() + 5
        while unpackers(ienv) and time.time() < end:
            time.sleep(0.05)
        assert not unpackers(ienv)
        assert cache_entries(ienv)[0] == []
    finally:
        shutil.rmtree(top, ignore_errors=True)
