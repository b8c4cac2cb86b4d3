# SPDX-License-Identifier: LGPL-2.1-or-later
"""vmd check: exit codes and the FILE: FIELD: reason format."""

import json
import os
import time

from conftest import special_files


def test_valid_files_and_directories(env):
    a = env.define("a")
    env.define("b")
    env.vmd("check", "-c", env.config, a, check=0)
    # A directory contributes its *.json files.
    defs = os.path.join(env.root, "defs")
    os.makedirs(defs)
    for n in ("a", "b"):
        os.rename(os.path.join(env.root, f"{n}.json"), os.path.join(defs, f"{n}.json"))
    p = env.vmd("check", "-c", env.config, defs, check=0)
    assert p.stdout == ""


def test_errors_are_reported_per_file_and_field(env):
    bad = env.define("bad", vcpus=0, disks=[{"name": "s", "size_mib": 0, "mount": "/var"}])
    p = env.vmd("check", "-c", env.config, bad, check=1)
    assert p.stdout.splitlines() == [
        f"{bad}: vcpus: must be 1..255",
        f"{bad}: disks[0].size_mib: must be 1..1048576 (required unless the disk has a base image)",
    ]


def test_duplicate_names_across_files(env):
    defs = os.path.join(env.root, "defs")
    os.makedirs(defs)
    for f in ("one.json", "two.json"):
        with open(os.path.join(defs, f), "w") as fh:
            json.dump({"name": "same", "system": env.closure}, fh)
    p = env.vmd("check", "-c", env.config, defs, check=1)
    assert p.stdout.strip() == f"{defs}/two.json: name: \"same\" is already defined in {defs}/one.json"


def test_missing_closure(env):
    d = env.define("gone", system="/nix/store/00000000000000000000000000000000-gone")
    p = env.vmd("check", "-c", env.config, d, check=1)
    assert "system: /nix/store/00000000000000000000000000000000-gone: No such file or directory" in p.stdout


def test_bad_settings(env):
    d = env.define("ok")
    with open(env.config, "w") as f:
        f.write('{"accel": "warp"}')
    p = env.vmd("check", "-c", env.config, d, check=1)
    assert p.stdout.strip() == f"{env.config}: accel: must be one of: auto, kvm, tcg"
    p = env.vmd("check", "-c", os.path.join(env.root, "missing.json"), d, check=1)
    assert "cannot read: No such file or directory" in p.stdout


def test_special_files_are_refused_promptly(env):
    defs = os.path.join(env.root, "defs")
    paths = special_files(defs)
    # A link to a regular file is a definition: NixOS's /etc is links.
    os.symlink(env.define("linked"), os.path.join(defs, "linked.json"))
    t0 = time.time()
    p = env.vmd("check", "-c", env.config, defs, timeout=10, check=1)
    assert time.time() - t0 < 5
    assert sorted(p.stdout.splitlines()) == sorted(f"{f}: not a regular file" for f in paths)
    # Named directly, the same; and as the settings file.
    p = env.vmd("check", "-c", env.config, paths[0], timeout=10, check=1)
    assert p.stdout == f"{paths[0]}: not a regular file\n"
    p = env.vmd("check", "-c", paths[0], env.define("ok"), timeout=10, check=1)
    assert f"{paths[0]}: not a regular file" in p.stdout + p.stderr


def test_usage(env):
    p = env.vmd(check=0)
    assert "vmd check" in p.stdout and "vmd run" in p.stdout
    env.vmd("--help", check=0)
    env.vmd("frobnicate", check=1)
    env.vmd("check", check=1)
    env.vmd("run", check=1)
