# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Nix side: nix/lib.nix turns attribute sets into definitions that vmd
accepts. There is no nixpkgs here, so the NixOS modules themselves are only
parsed; the pure function they are built on is evaluated for real."""
import json
import os
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NIX_OPTS = ["--option", "build-users-group", "", "--option", "substituters", ""]


def nix_eval(expr):
    p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--eval", "--strict", "--json", "-E", expr],
                       capture_output=True, text=True, timeout=120)
    return p


def write_defs(env, defs):
    out = os.path.join(env.root, "vms.d")
    os.makedirs(out, exist_ok=True)
    for name, d in defs.items():
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(d, f)
    return out


def test_lib_definitions_pass_vmd_check(env):
    expr = f"""
      let vmd = import {TOP}/nix/lib.nix;
          system = {{ outPath = "{env.closure}"; type = "derivation"; }};
      in vmd.toDefinitions {{
        edge = {{
          inherit system;
          vcpus = 2; memoryMiB = 1024; autostart = false; restart = "on-failure";
          kernelParams = [ "quiet" ];
          keys.ssh = {{ target = "/etc/ssh"; readOnly = false; }};
          keys.wireguard = {{ target = "/etc/wireguard"; generate = "wireguard"; }};
          shares = [ {{ tag = "data"; source = "/srv/data"; target = "/data"; }} ];
          disks.scratch = {{ sizeMiB = 1024; mount = "/var"; }};
          disks.db = {{ sizeMiB = 4096; mount = "/var/lib/db"; persistent = true; }};
        }};
        tiny = {{ system = "{env.closure}"; memoryMiB = null; }};
      }}"""
    p = nix_eval(expr)
    assert p.returncode == 0, p.stderr
    defs = json.loads(p.stdout)
    assert defs["edge"] == {
        "name": "edge", "system": env.closure, "vcpus": 2, "memory_mib": 1024, "autostart": False,
        "restart": "on-failure", "kernel_params": ["quiet"],
        "keys": [{"name": "ssh", "target": "/etc/ssh", "read_only": False},
                 {"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
        "shares": [{"tag": "data", "source": "/srv/data", "target": "/data"}],
        "disks": [{"name": "db", "size_mib": 4096, "mount": "/var/lib/db", "persistent": True},
                  {"name": "scratch", "size_mib": 1024, "mount": "/var"}],
    }
    # Unset (null) options are left out: vmd's defaults apply.
    assert defs["tiny"] == {"name": "tiny", "system": env.closure}
    p = env.vmd("check", "-c", env.config, write_defs(env, defs), check=0)
    assert p.stdout == ""


def test_lib_mistakes_are_reported_by_vmd_check(env):
    p = nix_eval(f"""(import {TOP}/nix/lib.nix).toDefinitions {{
        bad = {{ system = "{env.closure}"; memoryMiB = 1; disks.d = {{ sizeMib = 64; mount = "/var"; }}; }};
      }}""")
    assert p.returncode == 0, p.stderr
    d = write_defs(env, json.loads(p.stdout))
    p = env.vmd("check", "-c", env.config, d, check=1)
    assert sorted(p.stdout.splitlines()) == sorted([
        f"{d}/bad.json: disks[0].size_mib: must be 1..1048576 (required unless the disk has a base image)",
        f"{d}/bad.json: disks[0].sizeMib: unknown key",
        f"{d}/bad.json: memory_mib: must be 64..1048576",
    ])
    # What Nix itself can tell is an evaluation error.
    p = nix_eval(f'(import {TOP}/nix/lib.nix).toDefinitions {{ x = {{ memoryMiB = 64; }}; }}')
    assert p.returncode != 0 and "VM x has no system" in p.stderr


def test_etc_files(env):
    p = nix_eval(f"""(import {TOP}/nix/lib.nix).toEtcFiles {{ a = {{ system = "{env.closure}"; }}; }}""")
    assert p.returncode == 0, p.stderr
    files = json.loads(p.stdout)
    assert list(files) == ["vmd/vms.d/a.json"]
    assert json.loads(files["vmd/vms.d/a.json"]) == {"name": "a", "system": env.closure}


def test_modules_parse():
    for f in ("host.nix", "guest.nix", "lib.nix", "tiny-guest.nix"):
        p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--parse", os.path.join(TOP, "nix", f)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{f}: {p.stderr}"
