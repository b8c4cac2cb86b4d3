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


def host_memory_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_more_than_the_host_has_is_a_warning(env, daemons):
    mem, cpus = host_memory_mib(), os.sysconf("SC_NPROCESSORS_ONLN")
    want = max(200000, mem + 1024)
    assert want <= 1048576 and cpus < 255, "this host is too big for the test"
    big = env.define("big", memory_mib=want, vcpus=255)
    p = env.vmd("check", "-c", env.config, big, check=0)
    lines = [
        f"{big}: memory_mib: warning: {want} MiB is more than this host's memory ({mem} MiB, "
        "MemTotal in /proc/meminfo); the guest may be killed when it uses it",
        f"{big}: vcpus: warning: 255 vCPUs are more than this host's {cpus} CPUs; the guest will be slow, "
        "and under TCG it may not boot at all",
    ]
    assert p.stdout.splitlines() == lines
    # Beside an invalid definition: exit 1, its error and the warnings.
    bad = env.define("bad", restart="sometimes")
    p = env.vmd("check", "-c", env.config, big, bad, check=1)
    assert p.stdout.splitlines() == [f"{bad}: restart: must be one of: always, on-failure, never", *lines]
    # The daemon says the same when it loads the definition.
    d = daemons()
    d.define("big", memory_mib=want, vcpus=255, autostart=False)
    d.ctl("reload", check=0)
    path = os.path.join(env.settings["definitions_dir"], "big.json")
    d.wait_for(lambda: f"{path}: vcpus: warning: 255 vCPUs" in d.output(), "the warning")
    assert f"{path}: memory_mib: warning: {want} MiB" in d.output()
