# SPDX-License-Identifier: LGPL-2.1-or-later
"""The serial console (vmd console, vmd run in a terminal) and the
per-definition timeouts."""
import os
import time


def test_per_vm_ready_timeout_wins_over_the_host(env, daemons):
    # The host waits 120 s for READY=1; this VM only 1 s, less than a
    # TCG boot takes.
    env.write_settings(start_limit_unready=1)
    d = daemons()
    d.define("hasty", ready_timeout_s=1, restart="never")
    t0 = time.time()
    d.ctl("reload", check=0)
    st = d.wait_state("hasty", "stopped", timeout=60)
    assert time.time() - t0 < 30
    assert "no READY=1 from the guest within 1 s" in st["last_exit"], st


def test_per_vm_stop_timeout_wins_over_the_host(env, daemons):
    # The host grants 20 s of ACPI grace; this VM 1 s.
    d = daemons()
    d.define("deaf", stop_timeout_s=1)
    d.ctl("reload", check=0)
    d.wait_state("deaf", "running", ready=True)
    # Deaf to the power button from now on.
    d.ctl("exec", "deaf", "--", "rm", "/etc/acpi/PWRF/00000080", check=0)
    t0 = time.time()
    d.ctl("stop", "deaf", check=0)
    assert time.time() - t0 < 15
    assert "deaf: the guest did not power off within 1 s" in d.output()
