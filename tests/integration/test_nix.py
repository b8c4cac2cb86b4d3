# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Nix side.

- nix/lib.nix turns attribute sets into definitions that vmd accepts
  (builtins only, evaluated for real).
- nix/schema.json is what `vmd schema` prints: the modules' options are
  generated from it.
- nix/host.nix and nix/guest.nix are evaluated with nixpkgs' real lib
  (lib.evalModules) against stand-ins of the NixOS options they set
  (tests/nix/stubs.nix, each copied from the nixpkgs file it names); what
  comes out (the generated settings and definitions, the units, the initrd
  commands and units, the kernel parameters) is compared with golden files
  in tests/golden/nix/, and the derivations the modules make are built: the
  build-time `vmd check` of the definitions, and the guest runner, which
  boots a VM.
- flake.nix's outputs are evaluated against a stand-in nixpkgs.

The library is looked up in $VMD_NIXPKGS_LIB, <nixpkgs/lib>, then
../shared/nixpkgs-lib/lib next to the repository."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

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
    for f in ("host.nix", "guest.nix", "lib.nix", "tiny-guest.nix", "guest-parts.nix", "image-guest.nix",
              "package.nix", "image-guest-pkgs.nix"):
        p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--parse", os.path.join(TOP, "nix", f)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{f}: {p.stderr}"
    p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--parse", os.path.join(TOP, "flake.nix")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_schema_json_is_what_vmd_prints(env):
    """The one source of truth: the committed schema the modules read is
    the binary's own. After changing a field: build/vmd schema > nix/schema.json."""
    p = env.vmd("schema", check=0)
    with open(os.path.join(TOP, "nix", "schema.json")) as f:
        assert json.loads(p.stdout) == json.load(f), "nix/schema.json is stale: build/vmd schema > nix/schema.json"
    schema = json.loads(p.stdout)
    assert schema["definition"]["memory_mib"]["nix_name"] == "memoryMiB"
    assert schema["definition"]["disks"]["item_key"] == "name"
    assert schema["definition"]["shares"]["item_key"] == "tag"
    # Every field says what it is for.
    def walk(fields, path):
        for k, f in fields.items():
            assert f.get("doc"), f"{path}{k} has no doc"
            walk(f.get("fields", {}), f"{path}{k}.")
    walk(schema["definition"], "definition.")
    walk(schema["settings"], "settings.")


# --- the NixOS modules, evaluated with nixpkgs' lib -------------------------

def nixpkgs_lib():
    cands = [os.environ.get("VMD_NIXPKGS_LIB")]
    p = subprocess.run(["nix-instantiate", "--find-file", "nixpkgs/lib"], capture_output=True, text=True)
    if p.returncode == 0:
        cands.append(p.stdout.strip())
    cands.append(os.path.join(os.path.dirname(TOP), "shared", "nixpkgs-lib", "lib"))
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "default.nix")):
            return os.path.realpath(c)
    return None


LIB = nixpkgs_lib()
needs_lib = pytest.mark.skipif(LIB is None, reason="no nixpkgs lib: set VMD_NIXPKGS_LIB, or put nixpkgs "
                               "on NIX_PATH, or ../shared/nixpkgs-lib/lib next to the repository")
BUILD_OPTS = NIX_OPTS + ["--option", "sandbox", "false"]
GOLDEN = os.path.join(TOP, "tests", "golden", "nix")


@pytest.fixture
def vmdpkg(env):
    """A directory with bin/vmd (the vmd under test), as services.vmd.package."""
    d = os.path.join(env.root, "vmd-package")
    os.makedirs(os.path.join(d, "bin"))
    os.symlink(os.path.realpath(os.environ.get("VMD_BIN", os.path.join(TOP, "build", "vmd"))),
               os.path.join(d, "bin", "vmd"))
    return d


def evaluate(env, vmdpkg, attr, host="{ }", guest="{ }"):
    expr = (f'(import {TOP}/tests/nix/eval.nix {{ lib = {LIB}; vmdPackage = "{vmdpkg}"; '
            f'closure = "{env.closure}"; host = {host}; guest = {guest}; }}).{attr}')
    p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--read-write-mode", "--eval", "--strict", "--json",
                        "-E", expr], capture_output=True, text=True, timeout=300)
    return p, expr


def evaluated(env, vmdpkg, attr, **kw):
    p, _ = evaluate(env, vmdpkg, attr, **kw)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def build(env, vmdpkg, attr, **kw):
    _, expr = evaluate(env, vmdpkg, attr, **kw)
    return subprocess.run(["nix-build", *BUILD_OPTS, "--no-out-link", "-E", expr],
                          capture_output=True, text=True, timeout=600)


def normalise(v, env, vmdpkg):
    """Store hashes, the closure and the package directory vary between
    runs and checkouts; golden files hold placeholders."""
    text = json.dumps(v, indent=2, sort_keys=True)
    text = text.replace(os.path.realpath(env.closure), "@CLOSURE@").replace(vmdpkg, "@VMD@")
    return re.sub(r"/nix/store/[a-z0-9]{32}-", "/nix/store/@-", text) + "\n"


def check_golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("VMD_UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{path} differs (VMD_UPDATE_GOLDEN=1 rewrites it; review the diff)"


HOST = """{ services.vmd = {
    enable = true;
    settings = {
      stopTimeoutS = 10;
      controlIdleTimeoutS = 5;
      startLimitUnready = 3;
      networks.vmbr0 = { type = "bridge"; address = "10.0.0.1/24"; };
      networks.vmwg = { type = "wireguard"; address = "10.77.0.1/24"; endpoint = "10.0.0.1"; listenPort = 51999; };
    };
    vms.plain = { system = "@CLOSURE@"; memoryMiB = 300; restart = "on-failure"; };
    vms.inline = {
      config = { vmd.guest.sshHostKeys.enable = true; };
      vcpus = 2;
      kernelParams = [ "quiet" ];
      keys.wireguard = { target = "/etc/wireguard"; generate = "wireguard"; };
      disks.var = { sizeMiB = 64; mount = "/var"; };
      disks.db = { sizeMiB = 128; mount = "/var/lib/db"; persistent = true; };
      network = { bridge = "vmbr0"; address = "10.0.0.2/24"; };
      wireguard = { hub = "vmwg"; address = "10.77.0.2/32"; };
    };
  }; }"""


@needs_lib
def test_host_module(env, vmdpkg):
    host = HOST.replace("@CLOSURE@", env.closure)
    out = evaluated(env, vmdpkg, "host", host=host)
    check_golden("host.json", normalise(out, env, vmdpkg))
    assert out["assertions"] == []
    # Unset settings stay out of vmd.json (vmd's defaults), NixOS's paths go in.
    assert out["settings"]["stop_timeout_s"] == 10 and "ready_timeout_s" not in out["settings"]
    assert out["settings"]["control_idle_timeout_s"] == 5 and out["settings"]["start_limit_unready"] == 3
    assert out["firewallUDP"] == [51999]
    vmd_unit = out["units"]["vmd"]["serviceConfig"]
    assert vmd_unit["KillSignal"] == "SIGUSR2" and vmd_unit["ExecReload"].endswith("/bin/vmd reload")
    assert out["units"]["vmd-guests"]["restartIfChanged"] is False
    assert out["units"]["vmd-guests"]["serviceConfig"]["ExecStop"].endswith("/bin/vmd shutdown")

    # The build runs `vmd check` on the definitions; they are what vmd
    # accepts, round trip included.
    p = build(env, vmdpkg, "hostEval.config.system.build.vmdDefinitions", host=host)
    assert p.returncode == 0, p.stderr
    defs_dir = p.stdout.strip()
    assert sorted(os.listdir(defs_dir)) == ["inline.json", "plain.json"]
    with open(os.path.join(defs_dir, "inline.json")) as f:
        inline = json.load(f)
    with open(os.path.join(defs_dir, "plain.json")) as f:
        assert json.load(f) == {"name": "plain", "system": env.closure, "memory_mib": 300,
                                "restart": "on-failure"}
    assert inline == {
        "name": "inline", "system": env.closure, "vcpus": 2, "kernel_params": ["quiet"],
        "keys": [{"name": "ssh", "target": "/var/lib/vmd-keys/ssh", "read_only": False},
                 {"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
        "disks": [{"name": "db", "size_mib": 128, "mount": "/var/lib/db", "persistent": True},
                  {"name": "var", "size_mib": 64, "mount": "/var"}],
        "network": {"bridge": "vmbr0", "address": "10.0.0.2/24"},
        "wireguard": {"hub": "vmwg", "address": "10.77.0.2/32"},
    }
    settings = os.path.join(env.root, "nixos-vmd.json")
    with open(settings, "w") as f:
        json.dump(dict(out["settings"], qemu=env.qemu, virtiofsd=env.virtiofsd), f)
    p = env.vmd("check", "-c", settings, defs_dir, check=0)


@needs_lib
def test_host_module_refuses_bad_vms(env, vmdpkg):
    # What the types know fails the evaluation, naming the option.
    p, _ = evaluate(env, vmdpkg, "host",
                    host=f'{{ services.vmd = {{ enable = true; vms.x = {{ system = "{env.closure}"; memoryMiB = 1; }}; }}; }}')
    assert p.returncode != 0 and "services.vmd.vms.x.memoryMiB" in p.stderr, p.stderr
    p, _ = evaluate(env, vmdpkg, "host",
                    host='{ services.vmd = { enable = true; settings.stateDir = "relative"; }; }')
    assert p.returncode != 0 and "services.vmd.settings.stateDir" in p.stderr, p.stderr
    p, _ = evaluate(env, vmdpkg, "host",
                    host='{ services.vmd = { enable = true; settings.noSuchSetting = 1; }; }')
    assert p.returncode != 0 and "noSuchSetting" in p.stderr, p.stderr
    # What only vmd knows fails the build of the system, with vmd's words.
    p = build(env, vmdpkg, "hostEval.config.system.build.vmdDefinitions",
              host=f'{{ services.vmd = {{ enable = true; vms.x = {{ system = "{env.closure}"; '
                   f'disks.d.mount = "/var"; }}; }}; }}')
    assert p.returncode != 0
    assert "x.json: disks[0].size_mib: must be 1..1048576" in p.stderr, p.stderr
    # Against the settings too: a bridge the host does not have.
    p = build(env, vmdpkg, "hostEval.config.system.build.vmdDefinitions",
              host=f'{{ services.vmd = {{ enable = true; vms.y = {{ system = "{env.closure}"; '
                   f'network.bridge = "nosuchbr"; }}; }}; }}')
    assert p.returncode != 0
    assert "y.json: network.bridge: " in p.stderr and "nosuchbr" in p.stderr, p.stderr


def guest_golden(env, vmdpkg, name, guest):
    out = evaluated(env, vmdpkg, "guest", guest=guest)
    check_golden(name, normalise(out, env, vmdpkg))
    return out


@needs_lib
def test_guest_module_scripted_initrd(env, vmdpkg):
    out = guest_golden(env, vmdpkg, "guest-scripted.json", "{ networking.hostName = \"g\"; }")
    assert out["assertions"] == []
    assert out["nix"] is False
    assert "boot.panic_on_fail" in out["kernelParams"]
    # The same script the tiny guest's stage 1 runs, byte for byte.
    script = re.match(r"sh (/nix/store/\S+-vmd-mounts.sh) /mnt-root \|\| fail\n$", out["postMountCommands"]).group(1)
    with open(script) as a, open(os.path.join(TOP, "images", "guest", "vmd-mounts.sh")) as b:
        assert a.read() == b.read()
    assert out["initrdUnits"] == {}
    store = out["fileSystems"]["/nix/store"]
    assert store["neededForBoot"] and store["noCheck"] and "ro" in store["options"]
    notify = out["units"]["vmd-notify"]
    for dep in ("dev-virtio\\x2dports-io.vmd.notify.device", "qemu-guest-agent.service"):
        assert dep in notify["requires"] and dep in notify["after"]
    for dep in ("network.target", "vmd-network.service", "wg-quick-wg0.service"):
        assert dep in notify["after"]
    assert out["definition"] == {"name": "g", "system": env.closure}


@needs_lib
def test_guest_module_systemd_initrd(env, vmdpkg):
    out = guest_golden(env, vmdpkg, "guest-systemd.json", """{ networking.hostName = "g";
        boot.initrd.systemd.enable = true;
        vmd.guest.sshHostKeys.enable = true; }""")
    assert out["postMountCommands"] == ""
    unit = out["initrdUnits"]["vmd-mounts"]
    assert unit["after"] == ["initrd-fs.target"]
    assert "initrd-nixos-activation.service" in unit["before"] and unit["requiredBy"] == ["initrd.target"]
    assert unit["serviceConfig"]["ExecStart"].endswith("-vmd-mounts.sh /sysroot")
    assert unit["unitConfig"]["FailureAction"] == "poweroff-force"
    assert out["initrdStorePaths"][0].endswith("-vmd-mounts.sh")
    assert "emergency.target" in out["initrdUnits"]["vmd-emergency-poweroff"]["wantedBy"]
    # Host keys in the key directory; /etc/ssh stays NixOS's.
    assert out["sshHostKeys"] == [{"type": "ed25519", "path": "/var/lib/vmd-keys/ssh/ssh_host_ed25519_key"}]
    # A login prompt on the serial console; autologin only when asked.
    assert out["units"]["serial-getty@ttyS0"]["wantedBy"] == ["getty.target"]
    assert out["autologin"] is None
    assert evaluated(env, vmdpkg, "guest", guest='{ networking.hostName = "g"; '
                     'vmd.guest.console.autologinUser = "root"; }')["autologin"] == "root"
    assert out["definition"]["keys"] == [{"name": "ssh", "target": "/var/lib/vmd-keys/ssh", "read_only": False}]


@needs_lib
def test_guest_module_refuses_nix_daemon(env, vmdpkg):
    out = evaluated(env, vmdpkg, "guest", guest="{ nix.enable = true; }")
    assert len(out["assertions"]) == 1 and "nix.enable" in out["assertions"][0]


@needs_lib
def test_guest_runner_boots(env, vmdpkg):
    """system.build.vmdRunner: one command from a NixOS configuration to a
    throwaway run (here the tiny guest plays the toplevel)."""
    p = build(env, vmdpkg, "guestEval.config.system.build.vmdRunner",
              guest='{ networking.hostName = "runner"; vmd.guest.definition.memoryMiB = 256; }')
    assert p.returncode == 0, p.stderr
    runner = os.path.join(p.stdout.strip(), "bin", "vmd-run-runner")
    r = subprocess.run([runner, "cat", "/proc/sys/kernel/hostname"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, VMD_SETTINGS=env.config))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "runner\n"
    assert "runner: ready in" in r.stderr


@needs_lib
def test_package_expression():
    """nix/package.nix against stand-ins of stdenv and the packages: the
    NixOS paths are compiled in as vmd's defaults."""
    expr = f"""
      let lib = import {LIB};
          fake = n: {{ type = "derivation"; name = n; outPath = "/fake/${{n}}"; }};
          p = import {TOP}/nix/package.nix {{
            inherit lib; stdenv.mkDerivation = a: a;
            meson = fake "meson"; ninja = fake "ninja"; pkg-config = fake "pkg-config";
            jansson = fake "jansson"; libseccomp = fake "libseccomp"; libsodium = fake "libsodium"; libarchive = fake "libarchive";
            libnl = fake "libnl"; libvirt = fake "libvirt"; qemu_kvm = fake "qemu";
            virtiofsd = fake "virtiofsd"; wireguard-go = fake "wireguard-go";
          }};
      in {{ inherit (p) pname mesonFlags; src = builtins.attrNames (builtins.readDir p.src); }}"""
    p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--read-write-mode", "--eval", "--strict", "--json", "-E", expr],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["pname"] == "vmd"
    flags = out["mesonFlags"]
    for flag in ("-Dsbindir=bin", "-Ddefault_qemu=/fake/qemu/bin/qemu-system-x86_64",
                 "-Ddefault_virtiofsd=/fake/virtiofsd/bin/virtiofsd",
                 "-Ddefault_wireguard_go=/fake/wireguard-go/bin/wireguard-go",
                 "-Dlibvirt_library=/fake/libvirt/lib/libvirt.so.0",
                 "-Dlibvirt_qemu_library=/fake/libvirt/lib/libvirt-qemu.so.0"):
        assert flag in flags
    # Every option it sets is one meson knows.
    with open(os.path.join(TOP, "meson_options.txt")) as f:
        known = set(re.findall(r"option\('([a-z_]+)'", f.read())) | {"sbindir"}
    assert {f[2:].split("=")[0] for f in flags} <= known
    assert sorted(out["src"]) == ["images", "meson.build", "meson_options.txt", "net", "share", "tests", "vmd"]


@needs_lib
def test_flake_outputs(env, vmdpkg):
    """flake.nix's outputs, with a stand-in nixpkgs whose nixosSystem is the
    stubbed evaluation: the attributes exist and the checks evaluate."""
    expr = f"""
      let lib = import {LIB};
          pkgs = import {TOP}/tests/nix/image-pkgs.nix {{ inherit lib; }}
            // import {TOP}/tests/nix/fake-pkgs.nix {{ vmdPackage = "{vmdpkg}"; }} // {{
            callPackage = f: args: {{ type = "derivation"; name = "vmd-from-package-nix"; outPath = "{vmdpkg}"; }};
          }};
          nixpkgs = {{
            lib = lib // {{
              nixosSystem = {{ system, modules }}: lib.evalModules {{
                modules = [ {TOP}/tests/nix/stubs.nix
                  {{ _module.args.pkgs = pkgs; systemd.package = pkgs.systemd;
                     services.vmd.evalGuest = {{ name, modules }}: lib.evalModules {{
                       modules = [ {TOP}/tests/nix/stubs.nix {{ _module.args.pkgs = pkgs; systemd.package = pkgs.systemd;
                         system.build.toplevel = "{env.closure}"; }} ] ++ modules; }}; }}
                ] ++ modules;
              }};
            }};
            legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs);
          }};
          flake = import {TOP}/flake.nix;
          self = flake.outputs {{ inherit self nixpkgs; }};
      in {{
        top = builtins.attrNames self;
        packages = builtins.attrNames self.packages.x86_64-linux;
        packagesArm = builtins.attrNames self.packages.aarch64-linux;
        imageGuest = self.packages.x86_64-linux.image-guest.name;
        overlayImageGuest = (self.overlays.default pkgs pkgs).vmd-image-guest.name;
        modules = builtins.attrNames self.nixosModules;
        overlay = (self.overlays.default pkgs pkgs).vmd.name;
        checks = builtins.attrNames self.checks.x86_64-linux;
        definitions = self.checks.x86_64-linux.definitions.name;
        definitionsScript = builtins.elemAt self.checks.x86_64-linux.definitions.args 1;
        definitionsScriptArm = builtins.elemAt self.checks.aarch64-linux.definitions.args 1;
        runner = self.checks.x86_64-linux.runner.name;
        lib = builtins.attrNames self.lib;
      }}"""
    p = subprocess.run(["nix-instantiate", *NIX_OPTS, "--read-write-mode", "--eval", "--strict", "--json", "-E", expr],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["top"] == ["checks", "lib", "nixosModules", "overlays", "packages"]
    assert out["packages"] == ["default", "image-guest", "vmd"]
    # The image init starts qemu-ga through ld-linux-x86-64.so.2.
    assert out["packagesArm"] == ["default", "vmd"]
    assert out["imageGuest"] == "vmd-image-guest" and out["overlayImageGuest"] == "vmd-image-guest"
    assert out["modules"] == ["default", "guest", "host"]
    assert out["overlay"] == "vmd-from-package-nix"
    assert out["checks"] == ["definitions", "package", "runner"]
    assert out["definitions"] == "vmd-definitions" and out["runner"] == "vmd-run-example"
    # On x86_64 the example host has a dockerTools image too: image, no
    # system; its settings get the image guest.
    files = dict((os.path.basename(dst), src) for src, dst in
                 re.findall(r"cp (/nix/store/\S+) \$out/(\S+)", out["definitionsScript"]))
    assert sorted(files) == ["example.json", "web.json"]
    with open(files["web.json"]) as f:
        assert json.load(f) == {"name": "web", "image": "/fake/web.tar.gz", "memory_mib": 256,
                                "network": {"bridge": "vmbr0", "address": "10.0.0.3/24"},
                                "disks": [{"name": "var", "size_mib": 1024, "mount": "/var", "persistent": True}]}
    settings = re.search(r"check -c (/nix/store/\S+)", out["definitionsScript"]).group(1)
    with open(settings) as f:
        assert re.fullmatch(r"/nix/store/[a-z0-9]{32}-vmd-image-guest", json.load(f)["image_system"])
    assert "web.json" not in out["definitionsScriptArm"]
    assert {"toDefinitions", "toSettings", "schema"} <= set(out["lib"])


# --- container images on NixOS ------------------------------------------

def image_guest_expr(extra=""):
    return (f'let lib = import {LIB}; pkgs = import {TOP}/tests/nix/image-pkgs.nix {{ inherit lib; {extra} }}; '
            f'g = import {TOP}/nix/image-guest-pkgs.nix {{ inherit pkgs; }}; in')


@needs_lib
def test_image_guest_pkgs_evaluates():
    """nix/image-guest-pkgs.nix against stand-ins of the nixpkgs attributes
    it uses (tests/nix/image-pkgs.nix): the toplevel vmd boots, the initrd
    the init expects, the store paths it reads from /etc/vmd-image-guest."""
    expr = image_guest_expr() + """ {
        drv = g.drvPath;
        inherit (g) name kernelFile initFile initrdFile kernelParams guestPaths systemName;
        initrd = { inherit (g.initrd) name symlinks objects prepend compressor; };
        initrdRoots = g.initrd.objects;
        linuxRoots = g.linux.closure.rootModules;
        initrdModuleRoots = builtins.elemAt (builtins.filter (o: builtins.match ".*-initrd-modules-.*" o != null)
          g.initrd.objects) 0;
        busybox = g.busybox.name;
        init = { inherit (g.imageInit) name buildPhase buildInputs; src = toString g.imageInit.src; };
        qemuGa = g.qemu-ga.programs;
        nettools = g.nettools.programs;
      }"""
    p = nix_eval_rw(expr)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["name"] == "vmd-image-guest" and out["drv"].endswith("-vmd-image-guest.drv")
    # nixpkgs' kernel, as NixOS boots it; an uncompressed initrd.
    assert out["kernelFile"] == "/fake/linux-6.12.0/bzImage"
    assert out["kernelParams"] == "loglevel=4" and out["systemName"] == "x86_64-linux"
    initrd = out["initrd"]
    assert initrd["compressor"] == "cat" and out["initrdFile"].endswith("-vmd-image-initrd/initrd")
    links = dict(zip(initrd["symlinks"], initrd["objects"]))
    assert links["/init"] == out["initFile"] and out["initFile"].endswith("-vmd-image-init-0/bin/image-init")
    assert links["/bin"] == links["/sbin"] and links["/bin"].endswith("-vmd-image-guest-busybox/bin")
    assert re.search(r"-vmd-image-guest-initrd-modules-6\.12\.0/lib/modules$", links["/lib/modules"])
    for script in ("vmd-mounts.sh", "vmd-net.sh"):
        with open(links["/" + script]) as a, open(os.path.join(TOP, "images", "guest", script)) as b:
            assert a.read() == b.read()
    assert len(initrd["prepend"]) == 1 and initrd["prepend"][0].endswith("-vmd-image-guest-initrd-base.cpio")
    # /etc/vmd-image-guest: what image-init.c's load_guest_paths() reads.
    paths = dict(line.split("=", 1) for line in out["guestPaths"].splitlines())
    assert sorted(paths) == ["linux", "nettools", "qemuga"]
    assert paths["linux"].endswith("-vmd-image-guest-modules-6.12.0")
    assert paths["qemuga"].endswith("-vmd-image-guest-qemu-ga")
    assert paths["nettools"].endswith("-vmd-image-guest-nettools")
    # What the init loads from the store on top of the initrd's set.
    assert out["linuxRoots"] == ["virtio_pci", "virtio_blk", "virtio_console", "virtiofs", "overlay",
                                 "qemu_fw_cfg", "ext4", "crc32c_generic", "button", "evdev", "virtio_net",
                                 "wireguard"]
    # The init, static against glibc.static; busybox static too.
    assert out["busybox"] == "busybox-static"
    assert "-static" in out["init"]["buildPhase"] and "image-init.c" in out["init"]["buildPhase"]
    assert out["init"]["buildInputs"] == ["/fake/glibc-static"]
    assert os.path.isfile(os.path.join(out["init"]["src"], "image-init.c"))
    assert out["qemuGa"] == "qemu-ga=/fake/qemu-ga/bin/qemu-ga"
    assert out["nettools"] == "ip=/fake/iproute2/bin/ip wg=/fake/wireguard-tools/bin/wg"


def nix_eval_rw(expr):
    return subprocess.run(["nix-instantiate", *NIX_OPTS, "--read-write-mode", "--eval", "--strict", "--json",
                           "-E", expr], capture_output=True, text=True, timeout=300)


@needs_lib
def test_image_guest_module_trees_build(env):
    """The two module trees, built for real from a stand-in nixpkgs kernel:
    the tiny guest's Debian modules, compressed with xz as nixpkgs'
    kernels ship them. What busybox's modprobe reads comes out: plain .ko
    files, modules.dep, modules.builtin."""
    linux = os.path.dirname(os.path.realpath(os.path.join(env.closure, "kernel")))
    version = os.listdir(os.path.join(linux, "lib", "modules"))[0]
    expr = image_guest_expr(f'modules = {linux}; version = "{version}";') + " g.linux"
    p = subprocess.run(["nix-build", *BUILD_OPTS, "--no-out-link", "-E", expr],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    tree = os.path.join(p.stdout.strip(), "lib", "modules", version)
    kos = []
    for d, _, files in os.walk(tree):
        kos += [f for f in files if ".ko" in f]
    assert kos and all(f.endswith(".ko") for f in kos), kos
    with open(os.path.join(tree, "modules.dep")) as f:
        dep = {line.split(":")[0].rsplit("/", 1)[-1] for line in f}
    for m in ("virtio_pci.ko", "virtiofs.ko", "overlay.ko", "qemu_fw_cfg.ko", "virtio_net.ko", "wireguard.ko"):
        assert m in dep, m
    assert os.path.isfile(os.path.join(tree, "modules.builtin"))
    for m in ("virtio_pci", "wireguard", "crc32c_generic", "ext4", "evdev"):
        r = subprocess.run(["modprobe", "-d", p.stdout.strip(), "-S", version, "--show-depends", m],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def docker_archive(env):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ociimage as oi
    path = os.path.join(env.root, "web.tar")
    oi.build_docker_archive(path, oi.standard_layers(), oi.standard_config(), repo_tag="web:latest")
    return path


IMAGE_HOST = """{ services.vmd = {
    enable = true;
    @SETTINGS@
    vms.web = {
      image = { type = "derivation"; name = "web.tar"; outPath = "@IMAGE@"; };
      memoryMiB = 256;
      cmd = [ "httpd" "-f" ];
      env = [ "PORT=8080" ];
      keys.ssh = { target = "/etc/ssh"; };
      disks.var = { sizeMiB = 64; mount = "/var"; persistent = true; };
    };
  }; }"""


@needs_lib
def test_host_module_image_vm(env, vmdpkg, image_closure):
    image = docker_archive(env)
    host = IMAGE_HOST.replace("@IMAGE@", image)
    # settings.imageSystem defaults to the image guest built from nixpkgs
    # (here the stand-ins) once a VM has an image.
    out = evaluated(env, vmdpkg, "host", host=host.replace("@SETTINGS@", ""))
    assert out["assertions"] == []
    assert re.fullmatch(r"/nix/store/[a-z0-9]{32}-vmd-image-guest", out["settings"]["image_system"]), out["settings"]
    # Set, it wins; the definitions are what vmd accepts (the build runs
    # `vmd check` against the settings), with image and no system.
    host = host.replace("@SETTINGS@", f'settings.imageSystem = "{image_closure}";')
    out = evaluated(env, vmdpkg, "host", host=host)
    assert out["settings"]["image_system"] == image_closure
    p = build(env, vmdpkg, "hostEval.config.system.build.vmdDefinitions", host=host)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(p.stdout.strip(), "web.json")) as f:
        web = json.load(f)
    assert web == {
        "name": "web", "image": image, "memory_mib": 256, "cmd": ["httpd", "-f"], "env": ["PORT=8080"],
        "keys": [{"name": "ssh", "target": "/etc/ssh"}],
        "disks": [{"name": "var", "size_mib": 64, "mount": "/var", "persistent": True}],
    }
    # Without an image VM, image_system stays out of vmd.json.
    out = evaluated(env, vmdpkg, "host", host=f'{{ services.vmd = {{ enable = true; vms.a.system = "{env.closure}"; }}; }}')
    assert "image_system" not in out["settings"]


@needs_lib
def test_image_guest_pkgs_boots(env, image_closure, daemons):
    """The whole nixpkgs-built guest, built here from stand-ins that give
    Debian's kernel, busybox-static, qemu-ga, ip and wg nixpkgs' shapes (xz
    modules; programs with a store loader and RUNPATHs, wg behind a wrapper
    script), boots an image: the initrd's links into its /nix/store still
    resolve once the init has mounted the host store over it, the modules
    it loads are the decompressed ones, a disk mounts (ext4, crc32c),
    qemu-ga runs (vmd exec), and the entrypoint's status comes back."""
    linux = os.path.dirname(os.path.realpath(os.path.join(env.closure, "kernel")))
    version = os.listdir(os.path.join(linux, "lib", "modules"))[0]
    expr = image_guest_expr(f'modules = {linux}; version = "{version}"; '
                            f'debian = {os.path.realpath(image_closure)};') + " g"
    p = subprocess.run(["nix-build", *BUILD_OPTS, "--no-out-link", "-E", expr],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    guest = p.stdout.strip()
    env.write_settings(image_system=guest)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ociimage as oi
    image = os.path.join(env.root, "web.tar")
    oi.build_docker_archive(image, oi.standard_layers(), oi.standard_config(user="0:0"), repo_tag="web:latest")
    d = env.define("web", image=image, cmd=["sh", "-c",
                   "echo mounted=$(grep -c ' /var ext4 ' /proc/mounts); echo hello > /var/x; "
                   "echo var=$(cat /var/x); exit 7"],
                   disks=[{"name": "var", "size_mib": 64, "mount": "/var"}])
    r = env.run(d, timeout=300)
    out = r.stdout.replace("\r", "")
    assert r.returncode == 7, r.stdout + r.stderr
    assert "mounted=1\n" in out and "var=hello\n" in out, out
    assert "error while loading shared libraries" not in out and "cannot" not in out, out

    # qemu-ga, started through the loader link, answers vmd exec.
    dm = daemons()
    dm.define("svc", image=image, cmd=["sleep", "600"])
    dm.ctl("reload", check=0)
    dm.wait_for(lambda: (dm.status().get("svc") or {}).get("ready"), "svc to be ready", timeout=240)
    p = dm.ctl("exec", "svc", "--", "sh", "-c", "cat /proc/sys/kernel/hostname; exit 4")
    assert p.returncode == 4 and p.stdout == "svc\n", p.stdout + p.stderr
