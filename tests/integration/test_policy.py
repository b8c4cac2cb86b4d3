# SPDX-License-Identifier: LGPL-2.1-or-later
"""Policy that does what people mean: a VM whose boots never get anywhere
ends `failed`, and the error names the part that hung."""
import os
import time

MUTE = """#!/bin/sh
# Answers --help like the real one, then never serves: it holds the
# listening socket vmd gave it and accepts nothing.
if [ "$1" = "--help" ]; then exec /usr/lib/qemu/virtiofsd --help; fi
exec sleep 3600
"""


def test_a_virtiofsd_that_never_serves_is_named_and_the_vm_fails(env, daemons):
    mute = os.path.join(env.bin, "mute-virtiofsd")
    with open(mute, "w") as f:
        f.write(MUTE)
    os.chmod(mute, 0o755)
    env.write_settings(virtiofsd=mute, start_timeout_s=3, ready_timeout_s=120, start_limit_unready=2,
                       start_limit_burst=100)
    d = daemons()
    d.define("mute")
    t0 = time.time()
    d.ctl("reload", check=0)
    st = d.wait_state("mute", "failed", timeout=60)
    # Two starts, each given up after start_timeout_s, not ready_timeout_s.
    assert time.time() - t0 < 30
    assert st["restarts"] == 1
    assert "virtiofsd for nix-store (pid " in st["last_exit"], st
    assert "never accepted QEMU's vhost-user connection within 3 s" in st["last_exit"], st
    assert "no READY=1" not in d.output()
    assert "giving up (failed)" in d.output()
