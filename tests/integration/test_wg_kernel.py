# SPDX-License-Identifier: LGPL-2.1-or-later
"""The WireGuard kernel backend (net/wg-kernel.c) against the real module: the
host has none, the guest kernel has it. tests/unit/test-wg-kernel.c runs
inside a guest, with wg(8) to check what it set, and must pass every
subtest."""

import os
import re
import shutil
import subprocess
import tempfile

import conftest

TEST_BIN = os.environ.get("VMD_WG_KERNEL_TEST") or os.path.join(os.path.dirname(conftest.VMD), "tests",
                                                                 "test-wg-kernel")
LOADER = "ld-linux-x86-64.so.2"


def libraries(path):
    """What the dynamic loader maps for path: every library, the loader too."""
    out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*\S+ => (/\S+) \(", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    assert any(os.path.basename(lib) == LOADER for lib in libs), out
    return libs


def carry(dest, *programs):
    """Copies programs and their libraries into dest, flat: the guest has no
    /lib, so they run through the copied loader with --library-path."""
    for prog in programs:
        shutil.copy(prog, dest)
        for lib in libraries(prog):
            target = os.path.join(dest, os.path.basename(lib))
            if not os.path.exists(target):
                shutil.copy(lib, target)  # follows the symlink: the file itself


def test_kernel_backend_in_guest(env):
    assert os.path.isfile(TEST_BIN), f"{TEST_BIN} is missing (set VMD_WG_KERNEL_TEST)"
    wg = shutil.which("wg") or "/usr/bin/wg"
    assert os.path.isfile(wg), "wg (wireguard-tools) is missing"

    share = tempfile.mkdtemp(prefix="wgk-", dir=env.root)
    try:
        carry(share, TEST_BIN, wg)
        run = ["/t/" + LOADER, "--library-path", "/t"]
        d = env.define("wgk", shares=[{"tag": "t", "source": share, "target": "/t"}])
        script = ("modprobe wireguard && exec " + " ".join(run) + " /t/test-wg-kernel " +
                  " ".join(run) + " /t/" + os.path.basename(wg))
        p = env.run(d, "sh", "-c", script, timeout=600)
    finally:
        shutil.rmtree(share)
    out = p.stdout
    print(out)
    assert p.returncode == 0, f"rc={p.returncode}\nstdout:\n{out}\nstderr:\n{p.stderr}"

    lines = out.splitlines()
    plans = [l for l in lines if re.match(r"^1\.\.\d+$", l)]
    assert len(plans) == 1, out
    n = int(plans[0][3:])
    oks = [l for l in lines if re.match(r"^ok \d+ - ", l)]
    assert n >= 9 and len(oks) == n, out
    assert not [l for l in lines if l.startswith("not ok") or "# SKIP" in l.upper()], out
    assert [int(l.split()[1]) for l in oks] == list(range(1, n + 1)), out
    for name in ("link_create", "device_set_get", "peer_add", "peer_update", "refused", "peer_remove",
                 "many_allowed_ips", "handshake", "hostnet_kernel_hub"):
        assert any(l.endswith(" - " + name) for l in oks), name
    # The cross-check with wg(8) ran, and the handshake moved bytes.
    assert "# wg show wga dump: 2 line(s)" in out, out
    assert "# wg show wgb dump: 2 line(s)" in out, out
    assert re.search(r"# A: rx [1-9]\d* tx [1-9]\d* bytes, handshake [1-9]", out), out
    assert not os.path.exists(share)
