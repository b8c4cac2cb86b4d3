# SPDX-License-Identifier: LGPL-2.1-or-later
"""Container images for the tests, built here: there is no registry.

Stdlib only. A layer is a list of entries (the helpers below: dir_, file_,
symlink, hardlink, whiteout, opaque, device, huge, sparse), written in
order into one tar. build_layout() writes an OCI image layout (image-spec
image-layout.md: oci-layout, index.json, blobs/sha256/...), and
build_docker_archive() a docker-archive tarball the way `docker save` and
Nix's dockerTools write one (manifest.json with Config, RepoTags and
Layers "<hex>/layer.tar", the config as "<hex>.json", uncompressed layers).
In both, the config's rootfs.diff_ids are the sha256 of the uncompressed
layer tars.

standard_layers() and standard_config() are the image the tests run: a
busybox layer and a second layer with whiteouts and an opaque directory.
hostile_cases() is the corpus of layers an unpacker must refuse."""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

MTIME = 1700000000
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {"none": "application/vnd.oci.image.layer.v1.tar",
            "gzip": "application/vnd.oci.image.layer.v1.tar+gzip"}
REF_NAME = "org.opencontainers.image.ref.name"


# Entries. Each is (TarInfo, data); data None for entries without any.

def _info(path, kind, mode, uid=0, gid=0):
    ti = tarfile.TarInfo(path)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = MTIME
    return ti


def dir_(path, mode=0o755, uid=0, gid=0):
    return _info(path, tarfile.DIRTYPE, mode, uid, gid), None


def file_(path, data=b"", mode=0o644, uid=0, gid=0):
    if isinstance(data, str):
        data = data.encode()
    ti = _info(path, tarfile.REGTYPE, mode, uid, gid)
    ti.size = len(data)
    return ti, data


def symlink(path, target):
    ti = _info(path, tarfile.SYMTYPE, 0o777)
    ti.linkname = target
    return ti, None


def hardlink(path, target):
    """target: the other entry's path in the archive, as tar stores it."""
    ti = _info(path, tarfile.LNKTYPE, 0o644)
    ti.linkname = target
    return ti, None


def whiteout(path):
    """Deletes path (a file or a whole directory) of the layers below."""
    head, name = os.path.split(path)
    return file_(os.path.join(head, ".wh." + name))


def opaque(dirpath):
    """Hides everything dirpath had in the layers below."""
    return file_(os.path.join(dirpath, ".wh..wh..opq"))


def device(path, major, minor, kind="char"):
    ti = _info(path, tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE, 0o666)
    ti.devmajor, ti.devminor = major, minor
    return ti, None


def huge(path, size):
    """A header that claims size bytes, and no data: the tar ends right
    after it (so it must be a layer's last entry). Over 8 GiB the size goes
    into a PAX header."""
    ti = _info(path, tarfile.REGTYPE, 0o644)
    ti.size = size
    return ti, "huge"


def sparse(path, realsize, data=b"x" * 512):
    """A GNU sparse file (PAX format 1.0) of realsize bytes that holds only
    data, at its end: what a '10 GB sparse bomb' looks like in a tar."""
    assert len(data) % 512 == 0
    smap = f"1\n{realsize - len(data)}\n{len(data)}\n".encode()
    smap += b"\0" * (-len(smap) % 512)
    head, name = os.path.split(path)
    ti = _info(os.path.join(head, "GNUSparseFile.0", name), tarfile.REGTYPE, 0o644)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": path,
                      "GNU.sparse.realsize": str(realsize)}
    ti.size = len(smap) + len(data)
    return ti, smap + data


def layer_tar(entries):
    """The uncompressed tar of one layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, (ti, data) in enumerate(entries):
            if data == "huge":
                assert i == len(entries) - 1, "a huge() entry must be the layer's last"
                # Only the header: writing the data is what we avoid.
                header = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                tar.fileobj.write(header)
                tar.offset += len(header)
                continue
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def image_config(config, diff_ids):
    """An image config (image-spec config.md) around the run config."""
    return {
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"vmd tests: layer {i}"}
                    for i in range(len(diff_ids))],
    }


def _dump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(layout, data):
    hexd = sha256(data)
    path = os.path.join(layout, "blobs", "sha256", hexd)
    with open(path, "wb") as f:
        f.write(data)
    return hexd


def build_layout(directory, layers, config, ref=None, compress="gzip"):
    """Writes (or adds to: another call on the same directory adds one more
    image to its index) an OCI image layout. layers: lists of entries;
    config: the run config (Entrypoint, Cmd, Env, WorkingDir, User...).
    Returns the digests: manifest, config, layers (the blobs), diff_ids."""
    os.makedirs(os.path.join(directory, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    descs, diff_ids, blobs = [], [], []
    for entries in layers:
        tar = layer_tar(entries)
        diff_ids.append(sha256(tar))
        blob = gzip.compress(tar, mtime=0) if compress == "gzip" else tar
        blobs.append(_put_blob(directory, blob))
        descs.append({"mediaType": MT_LAYER[compress], "digest": f"sha256:{blobs[-1]}", "size": len(blob)})
    cfg = _dump(image_config(config, diff_ids))
    cfg_hex = _put_blob(directory, cfg)
    manifest = _dump({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                      "config": {"mediaType": MT_CONFIG, "digest": f"sha256:{cfg_hex}", "size": len(cfg)},
                      "layers": descs})
    man_hex = _put_blob(directory, manifest)
    index_path = os.path.join(directory, "index.json")
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    desc = {"mediaType": MT_MANIFEST, "digest": f"sha256:{man_hex}", "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"}}
    if ref:
        desc["annotations"] = {REF_NAME: ref}
    index["manifests"].append(desc)
    with open(index_path, "w") as f:
        json.dump(index, f, indent=2)
    return {"manifest": man_hex, "config": cfg_hex, "layers": blobs, "diff_ids": diff_ids}


def _add(tar, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
    tar.addfile(ti, io.BytesIO(data))


def build_docker_archive(path, layers, config, repo_tag=None, gzip_it=False, layer_data=None):
    """Writes a docker-archive tarball (gzip-compressed as a whole with
    gzip_it, as dockerTools.buildImage's .tar.gz). layer_data, if given,
    replaces the layer tars' bytes (their diff_ids still come from the
    entries): for archives whose layers do not match their config.
    Returns the digests: config, diff_ids."""
    tars = [layer_tar(entries) for entries in layers]
    diff_ids = [sha256(t) for t in tars]
    cfg = _dump(image_config(config, diff_ids))
    cfg_hex = sha256(cfg)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        names = []
        for i, t in enumerate(tars):
            hexd = diff_ids[i]
            ti = tarfile.TarInfo(hexd)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(ti)
            _add(tar, f"{hexd}/VERSION", b"1.0")
            _add(tar, f"{hexd}/json", _dump({"id": hexd}))
            _add(tar, f"{hexd}/layer.tar", layer_data[i] if layer_data else t)
            names.append(f"{hexd}/layer.tar")
        _add(tar, f"{cfg_hex}.json", cfg)
        if repo_tag:
            repo, tag = repo_tag.rsplit(":", 1)
            _add(tar, "repositories", _dump({repo: {tag: diff_ids[-1]}}))
        # Last, as docker save and dockerTools write it.
        _add(tar, "manifest.json", _dump([{"Config": f"{cfg_hex}.json",
                                            "RepoTags": [repo_tag] if repo_tag else [],
                                            "Layers": names}]))
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gzip_it else data)
    return {"config": cfg_hex, "diff_ids": diff_ids}


# The standard test image.

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "id", "pwd", "sleep", "env", "ls", "touch", "mkdir", "rm", "test", "[",
           "true", "false", "printf", "grep", "sed", "head", "tail", "wc", "sync", "stat", "ps", "kill",
           "hostname", "ip", "ping", "wget", "httpd", "mount", "uname", "sha256sum", "readlink", "ln",
           "chmod", "tr", "cut", "od", "seq", "usleep", "dd", "find", "awk", "whoami", "df")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APP_UID = 1000
STAFF_GID = 50

ENTRY = """#!/bin/sh
# The image's entrypoint: says that it ran, then runs the command (Cmd).
export ENTRY_RAN=yes
exec "$@"
"""

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
"""


def busybox_layer(busybox=BUSYBOX):
    """Layer 0: busybox and its applets, users, the usual directories (no
    /proc, /sys, /dev or /run: images built FROM scratch, as Nix builds
    them, often have none), and what layer 1 deletes or hides."""
    with open(busybox, "rb") as f:
        bb = f.read()
    e = [dir_("bin"), file_("bin/busybox", bb, 0o755)]
    e += [symlink(f"bin/{a}", "busybox") for a in APPLETS]
    e += [file_("bin/entry", ENTRY, 0o755),
          dir_("etc"), file_("etc/passwd", PASSWD), file_("etc/group", GROUP),
          file_("etc/motd", "from layer zero\n"),
          file_("etc/removed", "whited out by layer one\n"),
          dir_("home"), dir_("home/app", 0o755, APP_UID, APP_UID),
          file_("home/app/secret", "only app reads this\n", 0o600, APP_UID, APP_UID),
          dir_("root", 0o700), dir_("tmp", 0o1777), dir_("var"),
          dir_("opt"), dir_("opt/data"), file_("opt/data/old1", "old\n"), file_("opt/data/old2", "old\n"),
          dir_("opt/data/olddir"), file_("opt/data/olddir/deep", "old\n"),
          dir_("srv"), dir_("srv/gone"), file_("srv/gone/inside", "gone with its directory\n"),
          dir_("usr"), dir_("usr/bin"), symlink("usr/bin/env", "../../bin/busybox"),
          file_("usr/bin/suid-tool", "#!/bin/sh\nid -u\n", 0o4755),
          file_("usr/bin/sgid-tool", "#!/bin/sh\nid -g\n", 0o2755)]
    return e


def second_layer():
    """Layer 1, its names written "./x" as tar -C dir . writes them: a
    whiteout of a file and of a directory of layer 0, an opaque
    directory (with a new file listed before the opaque marker: entries of
    the same layer stay whatever their order), a file replaced, a hard
    link, and a web root."""
    return [dir_("./etc"), whiteout("./etc/removed"), file_("./etc/motd", "from layer one\n"),
            dir_("./opt"), dir_("./opt/data"), file_("./opt/data/new", "new\n"), opaque("./opt/data"),
            dir_("./srv"), whiteout("./srv/gone"),
            dir_("./srv/www"), file_("./srv/www/index.html", "hello from an image\n"),
            dir_("./usr"), dir_("./usr/share"), dir_("./usr/share/app"),
            file_("./usr/share/app/a", "linked\n"), hardlink("./usr/share/app/b", "./usr/share/app/a")]


def standard_layers(busybox=BUSYBOX):
    return [busybox_layer(busybox), second_layer()]


def standard_config(user="app", cmd=None, stop_signal=None, **more):
    c = {"Entrypoint": ["/bin/entry"], "Cmd": cmd or ["sh", "-c", "echo hello from cmd"],
         "Env": [f"PATH={PATH}", "MARKER=from-the-image", "LANG=C"],
         "WorkingDir": "/home/app", "User": user}
    if stop_signal:
        c["StopSignal"] = stop_signal
    c.update(more)
    return c


def flatten(layers):
    """What the layers make, applied as image-spec layer.md says: path ->
    (kind, mode, uid, gid, content or link target). A reference for the
    unpacker's result. setuid/setgid bits are kept here."""
    tree = {}
    for entries in layers:
        opaque_dirs = {os.path.normpath(os.path.dirname(ti.name)) for ti, _ in entries
                       if os.path.basename(ti.name) == ".wh..wh..opq"}
        for d in opaque_dirs:
            for p in [p for p in tree if p.startswith(d + "/")]:
                del tree[p]
        for ti, data in entries:
            path = os.path.normpath(ti.name)
            head, name = os.path.split(path)
            if name == ".wh..wh..opq":
                continue
            if name.startswith(".wh."):
                gone = os.path.join(head, name[4:])
                for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                    del tree[p]
                continue
            if ti.type == tarfile.LNKTYPE:
                tree[path] = tree[os.path.normpath(ti.linkname)]
            elif ti.type == tarfile.SYMTYPE:
                tree[path] = ("symlink", 0o777, 0, 0, ti.linkname)
            elif ti.type == tarfile.DIRTYPE:
                tree[path] = ("dir", ti.mode, ti.uid, ti.gid, None)
            else:
                tree[path] = ("file", ti.mode, ti.uid, ti.gid, sha256(data))
    return tree


def scan(rootfs):
    """An unpacked tree in flatten()'s terms."""
    tree = {}
    for top, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            full = os.path.join(top, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, rootfs)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("symlink", 0o777, 0, 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", perm, st.st_uid, st.st_gid, None)
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    tree[rel] = ("file", perm, st.st_uid, st.st_gid, sha256(f.read()))
            else:
                tree[rel] = ("other", perm, st.st_uid, st.st_gid, st.st_rdev)
    return tree


# The hostile corpus. Each case: (name, layers, what the refusal names).
# outside: an absolute host directory an escape would write into (the
# test's own), victim: a file there that an escape would overwrite.

def hostile_cases(outside, victim):
    up = "../" * 40  # from any depth, up to /
    rel_out = up + outside.lstrip("/")
    rel_victim = up + victim.lstrip("/")
    return [
        ("traversal", [[file_("../escaped-traversal", "x")]], "escaped-traversal"),
        ("traversal-deep", [[dir_("etc"), file_(f"etc/{rel_out}/escaped-deep", "x")]], "escaped-deep"),
        ("absolute", [[file_(f"{outside}/escaped-absolute", "x")]], "escaped-absolute"),
        ("symlink-then-write", [[symlink("evil", outside), file_("evil/escaped-symlink", "x")]],
         "escaped-symlink"),
        ("symlink-relative-then-write", [[dir_("a"), symlink("a/evil", rel_out),
                                          file_("a/evil/escaped-symlink-rel", "x")]],
         "escaped-symlink-rel"),
        ("symlink-then-write-across-layers", [[symlink("evil", outside)],
                                              [file_("evil/escaped-across", "x")]], "escaped-across"),
        ("symlink-dir-then-mkdir-across-layers", [[symlink("evil", outside)],
                                                  [dir_("evil/escaped-dir")]], "escaped-dir"),
        ("hardlink-out-relative", [[hardlink("pw-rel", up + "etc/passwd")]], "pw-rel"),
        ("hardlink-out-absolute", [[hardlink("pw-abs", "/etc/passwd")]], "pw-abs"),
        ("hardlink-out-then-write", [[hardlink("victim-link", rel_victim), file_("victim-link", "overwritten\n")]],
         "victim-link"),
        ("hardlink-to-symlink", [[symlink("s", victim), hardlink("link-to-symlink", "s")]], "link-to-symlink"),
        ("char-device", [[dir_("dev"), device("dev/evil-mem", 1, 1)]], "evil-mem"),
        ("block-device", [[dir_("dev"), device("dev/evil-disk", 8, 0, "block")]], "evil-disk"),
        ("bomb-header", [[dir_("data"), huge("data/bomb", 10 << 30)]], "bomb"),
        ("bomb-sparse", [[dir_("data"), sparse("data/sparse-bomb", 10 << 30)]], "sparse-bomb"),
    ]
