# SPDX-License-Identifier: LGPL-2.1-or-later
"""GC roots: while a VM is defined (daemon) or running (`vmd run`, daemon),
its closure is a root that `nix-store -q --roots` names, and the real
`nix-collect-garbage` leaves it alone; once the VM is gone, so is the root,
and the same collection deletes the closure.

Collecting garbage in the machine's own store would delete whatever else
is unrooted there, so the test runs in private mount and PID namespaces
with a fresh, empty /nix (tmpfs) into which it imports the tiny guest's
closure. The PID namespace matters too: Nix also counts every process's
open files as roots, and other tests' virtiofsd hold files of the same
store paths open in the real store."""
import os
import subprocess

from conftest import VMD

SCRIPT = r'''
set -euo pipefail
# Not from the environment: Nix counts every process's environment as
# roots, and everything started here would carry it.
SYS=$1
mount -t tmpfs -o mode=0755 nix /nix
nix-store --import < "$ROOT/closure.export" >/dev/null
mkdir -p /nix/var/nix/gcroots/auto
vmd() { "$VMD" "$@"; }
say() { echo "== $*"; }
# The roots that files make: not Nix's runtime roots (/proc/PID/...), which
# the running VM's virtiofsd holds while it serves the closure.
roots() { nix-store -q --roots "$SYS" 2>/dev/null | grep -v -e '^{' -e '^/proc/' || true; }
collect() { nix-collect-garbage >/dev/null 2>&1; }
valid() { nix-store --check-validity $(cat "$ROOT/closure.paths") 2>/dev/null && [ -d "$SYS" ]; }

say nothing holds it yet
[ -z "$(roots)" ]

say vmd run: a root while it runs
"$VMD" run -c "$CONF" -q "$ROOT/t.json" -- sleep 600 >/dev/null 2>"$ROOT/run1.err" &
run=$!
for i in $(seq 600); do [ -L "$ROOT/run/vms/t/system" ] && break; sleep 0.1; done
roots
roots | grep -qx "$ROOT/run/vms/t/system -> $SYS"
collect
valid
say killed run: the root stays until the next run sweeps it
for i in $(seq 1200); do grep -q 'ready in' "$ROOT/run1.err" && break; sleep 0.1; done
grep -q 'ready in' "$ROOT/run1.err"
kill -9 $run
wait $run || true
# Its QEMU and virtiofsd follow it (parent-death signal).
alive() { ps -eo stat=,args= | grep -v '^Z' | grep -q -e qemu-system -e virtiofsd; }
for i in $(seq 300); do alive || break; sleep 0.1; done
! alive
roots | grep -qx "$ROOT/run/vms/t/system -> $SYS"
vmd run -c "$CONF" -q "$ROOT/t.json" -- cat "$SYS/kernel-params" >/dev/null 2>&1
say after the run: no root
[ -z "$(roots)" ]
[ -z "$(ls /nix/var/nix/gcroots/auto)" ]

say daemon: a root per defined VM, running or not
mkdir -p "$ROOT/vms.d"
cp "$ROOT/t.json" "$ROOT/vms.d/t.json"
sed 's/"name": "t"/"name": "idle"/; s/}$/, "autostart": false}/' "$ROOT/t.json" > "$ROOT/vms.d/idle.json"
"$VMD" daemon -c "$CONF" > "$ROOT/daemon.log" 2>&1 &
daemon=$!
for i in $(seq 1200); do vmd -c "$CONF" status t 2>/dev/null | grep -q ' yes ' && break; sleep 0.1; done
roots
roots | grep -qx "$ROOT/state/gcroots/t -> $SYS"
roots | grep -qx "$ROOT/state/gcroots/idle -> $SYS"
roots | grep -qx "$ROOT/run/vms/t/system -> $SYS"
collect
valid
vmd -c "$CONF" exec t -- ls "$SYS" >/dev/null
say only the idle definition holds it
rm "$ROOT/vms.d/t.json"
vmd -c "$CONF" reload >/dev/null
for i in $(seq 300); do [ -e "$ROOT/run/vms/t" ] || break; sleep 0.1; done
[ "$(roots)" = "$ROOT/state/gcroots/idle -> $SYS" ]
collect
valid
say no definition: the closure goes
rm "$ROOT/vms.d/idle.json"
vmd -c "$CONF" reload >/dev/null
[ -z "$(roots)" ]
collect
[ ! -e "$SYS" ]
say gone
vmd -c "$CONF" shutdown 2>/dev/null
wait $daemon
echo PASS
'''


def test_closures_are_gc_roots_while_defined_or_running(env):
    closure = os.path.realpath(env.closure)
    paths = subprocess.run(["nix-store", "-qR", closure], check=True, capture_output=True,
                           text=True).stdout.split()
    with open(os.path.join(env.root, "closure.paths"), "w") as f:
        f.write("\n".join(paths) + "\n")
    with open(os.path.join(env.root, "closure.export"), "wb") as f:
        subprocess.run(["nix-store", "--export", *paths], check=True, stdout=f,
                       stderr=subprocess.DEVNULL)
    env.define("t")
    vars = dict(os.environ, ROOT=env.root, CONF=env.config, VMD=VMD)
    vars.pop("VMD_GUEST", None)
    p = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                        "bash", "-c", SCRIPT, "gc-test", closure], env=vars, capture_output=True, text=True, timeout=600)
    steps = [l for l in p.stdout.splitlines() if l.startswith("== ")]
    assert p.returncode == 0 and p.stdout.rstrip().endswith("PASS"), (
        f"failed after {steps[-1] if steps else 'the start'}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}\n"
        + (open(os.path.join(env.root, "daemon.log")).read() if os.path.exists(os.path.join(env.root, "daemon.log")) else ""))
    os.unlink(os.path.join(env.root, "closure.export"))
