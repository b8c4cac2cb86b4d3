# SPDX-License-Identifier: LGPL-2.1-or-later
"""The child audit: what every process vmd starts runs as, holds and sees.

A daemon runs one VM with a read-write key directory, a generated
(read-only) WireGuard key directory and a disk; a `vmd run` beside it runs
another. For every descendant of the two vmd processes (QEMU, each
virtiofsd and its sandboxed inner process) the test reads /proc/PID/status,
fd, environ and, for QEMU, root, prints one line per process (the table
the security notes quote) and then checks it: QEMU is not root, has no
capability at all, no new privileges and a seccomp filter, sees only its
programs, the store and a few devices, has a network namespace of its
own (its taps and sockets are fds), and holds no file of vmd's state
but its own VM's; virtiofsd's sandboxed process keeps only the
capabilities its share needs (none for the store, dac_override for a
read-only key); no child holds the control socket or another VM's files
or inherits vmd's environment."""

import grp
import os
import re
import socket
import stat
import time

import pytest

ALLOWED_ENV = {"PATH"}
# What QEMU's private root may hold at its top, and in its /dev.
QEMU_ROOT = {"usr", "lib", "lib64", "etc", "nix", "dev", "tmp"}
QEMU_DEV = {"null", "zero", "urandom", "random", "kvm"}
# virtiofsd's sandboxed process: a writable share keeps what writing as any
# owner takes (chown, dac_override, fowner, fsetid, setgid, setuid, mknod,
# setfcap); a read-only one only dac_override and fowner (O_NOATIME opens,
# as a guest's overlayfs makes); the store nothing.
CAPS_RW = 0x880000db
CAPS_RO = 0xa


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def children(pid):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == pid:
            kids.append(int(p))
    return kids


def descendants(pid):
    out = []
    for k in children(pid):
        out.append(k)
        out += descendants(k)
    return out


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def fds(pid):
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            pass
    return out


def cmdline_or_empty(pid):
    try:
        return cmdline(pid)
    except OSError:
        return []


def socket_inode(path):
    """The inode of the socket bound at path, from /proc/net/unix."""
    with open("/proc/net/unix") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path:
                return parts[6]
    return None


# Each VM's shares in vmd's order (the store, then keys, then shares):
# virtiofsd is told the directory vmd mounted for it, <run>/fsN.dir.
SHARES = {"audita": ["nix-store", "key-ssh", "key-wireguard"], "auditb": ["nix-store"],
          "auditlv": ["nix-store", "key-wireguard"]}


def share_of(source):
    """VM:SHARE from the directory virtiofsd is told (or, before vmd
    mounted it for virtiofsd, the source itself)."""
    m = re.search(r"/vms/([a-z0-9-]+)/fs(\d+)\.dir$", source)
    if m:
        return f"{m.group(1)}:{SHARES[m.group(1)][int(m.group(2))]}"
    m = re.search(r"/keys/([a-z0-9-]+)/([a-z0-9-]+)$", source)
    return f"{m.group(1)}:key-{m.group(2)}" if m else "?:nix-store" if source == "/nix/store" else source


def label(pid, vmd_pids):
    argv = cmdline(pid)
    exe = os.path.basename(argv[0]) if argv else "?"
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    if "qemu-system" in exe:
        vm = next((a.split("=", 1)[1].split(",")[0] for a in argv if a.startswith("guest=")), "?")
        return "qemu", vm
    if "virtiofsd" in exe:
        source = next((a.split("=", 1)[1] for a in argv if a.startswith("source=") or a.startswith("--shared-dir=")), "?")
        return ("virtiofsd-outer" if ppid in vmd_pids else "virtiofsd-inner"), share_of(source)
    return exe, ""


def audit_line(kind, what, pid, st, fd_count, extra=""):
    return (f"{kind:18} {what[-24:]:24} pid={pid:<7} Uid={st['Uid'].split()[0]:>5} "
            f"Gid={st['Gid'].split()[0]:>5} Groups={st.get('Groups', '') or '-':10} "
            f"CapEff={st['CapEff']} CapPrm={st['CapPrm']} CapBnd={st['CapBnd']} "
            f"NoNewPrivs={st['NoNewPrivs']} Seccomp={st['Seccomp']} fds={fd_count}{extra}")


def test_child_audit(env, daemons, capsys):
    s = env.settings
    d = daemons()
    d.define("audita",
             keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False},
                   {"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
             disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    d.ctl("reload", check=0)
    d.wait_state("audita", "running", ready=True, timeout=180)
    run = env.popen(env.define("auditb", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}]),
                    "sleep", "120", extra=("-q",))
    try:
        env.wait_ready(run)
        vmd_pids = {d.proc.pid, run.pid}
        control = socket_inode(os.path.join(s["run_dir"], "vmd.sock"))
        assert control, "the control socket is not in /proc/net/unix"
        kvm = str(grp.getgrnam("kvm").gr_gid)

        rows, problems = [], []
        for owner, owner_vm in ((d.proc.pid, "audita"), (run.pid, "auditb")):
            other = "auditb" if owner_vm == "audita" else "audita"
            for pid in descendants(owner):
                try:
                    kind, what = label(pid, vmd_pids)
                    st = status(pid)
                    links = fds(pid)
                    env_keys = {e.split("=", 1)[0] for e in environ(pid)}
                except (OSError, IndexError):
                    continue  # gone meanwhile (a helper that ended)
                extra = ""
                if kind == "qemu":
                    root = sorted(os.listdir(f"/proc/{pid}/root"))
                    dev = sorted(os.listdir(f"/proc/{pid}/root/dev"))
                    extra = f" root={','.join(root)} dev={','.join(dev)}"
                    if not set(root) <= QEMU_ROOT or not set(dev) <= QEMU_DEV:
                        problems.append(f"{kind} {pid}: sees {root}, /dev {dev}")
                    for hidden in (s["run_dir"], s["state_dir"], s["keys_dir"], s["log_dir"], "/root",
                                   "/run", "/proc", "/home", "/etc/shadow", "/etc/passwd"):
                        if os.path.lexists(f"/proc/{pid}/root{hidden}"):
                            problems.append(f"{kind} {pid}: sees {hidden}")
                    net = os.readlink(f"/proc/{pid}/ns/net")
                    extra += f" net={'own' if net != os.readlink('/proc/self/ns/net') else 'host'}"
                    if net == os.readlink("/proc/self/ns/net"):
                        problems.append(f"{kind} {pid}: in the host's network namespace")
                    if st["Uid"].split()[0] == "0" or st["Gid"].split()[0] == "0":
                        problems.append(f"{kind} {pid}: runs as root (Uid {st['Uid']}, Gid {st['Gid']})")
                    for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
                        if int(st[cap], 16) != 0:
                            problems.append(f"{kind} {pid}: {cap} {st[cap]}")
                    if set(st.get("Groups", "").split()) - {kvm}:
                        problems.append(f"{kind} {pid}: supplementary groups {st['Groups']}")
                if kind == "virtiofsd-inner":
                    allowed = 0 if what.endswith(":nix-store") else CAPS_RW if what.endswith(":key-ssh") else CAPS_RO
                    if int(st["CapEff"], 16) & ~allowed or int(st["CapPrm"], 16) & ~allowed:
                        problems.append(f"{kind} {what}: CapEff {st['CapEff']} CapPrm {st['CapPrm']}")
                if kind == "virtiofsd-outer" and (int(st["CapEff"], 16) or int(st["CapPrm"], 16)):
                    problems.append(f"{kind} {what}: CapEff {st['CapEff']} CapPrm {st['CapPrm']}")
                rows.append(audit_line(kind, what, pid, st, len(links), extra))
                if st["NoNewPrivs"] != "1" or st["Seccomp"] != "2":
                    problems.append(f"{kind} {pid}: NoNewPrivs {st['NoNewPrivs']} Seccomp {st['Seccomp']}")
                if env_keys - ALLOWED_ENV:
                    problems.append(f"{kind} {pid}: environment {sorted(env_keys)}")
                for n, target in links.items():
                    if target == f"socket:[{control}]":
                        problems.append(f"{kind} {pid}: holds the control socket (fd {n})")
                    if f"/{other}/" in target + "/" or target.endswith(f"{other}.log"):
                        problems.append(f"{kind} {pid}: holds {other}'s {target} (fd {n})")
                    for base in (s["state_dir"], s["keys_dir"], s["run_dir"]):
                        if target == base or (target.startswith(base + "/") and f"/{owner_vm}" not in target):
                            problems.append(f"{kind} {pid}: holds {target} (fd {n})")
                    # A directory fd QEMU holds (the run directory's lock)
                    # must not let it in: root's, 0700.
                    if kind == "qemu" and target.startswith("/") and os.path.isdir(target):
                        dst = os.stat(target)
                        if dst.st_uid != 0 or stat.S_IMODE(dst.st_mode) & 0o077:
                            problems.append(f"{kind} {pid}: holds {target} (fd {n}), open to it")
        with capsys.disabled():
            print("\nchild audit:")
            for r in rows:
                print("  " + r)
        kinds = [r.split()[0] for r in rows]
        # audita: the store, two keys; auditb: the store. Each virtiofsd
        # is an outer process and its sandboxed inner one.
        assert kinds.count("qemu") == 2, rows
        assert kinds.count("virtiofsd-outer") == 4 and kinds.count("virtiofsd-inner") == 4, rows
        assert not problems, "\n".join(problems)
    finally:
        run.terminate()
        run.wait(timeout=120)
        d.stop()


def test_qemu_user_missing_or_root(env):
    """A missing user is an error that says how to create it, never a QEMU
    that runs as root; root itself is refused by the settings."""
    path = env.define("nouser")
    env.write_settings(qemu_user="vmd-no-such-user")
    p = env.run(path, "true", check=2)
    assert "QEMU's user vmd-no-such-user does not exist" in p.stderr, p.stderr
    assert "useradd --system --user-group --groups kvm" in p.stderr, p.stderr
    env.write_settings(qemu_user="root")
    p = env.run(path, "true", check=1)
    assert "qemu_user: must not be root" in p.stdout + p.stderr, p.stdout + p.stderr


def test_child_audit_libvirt(env, lv, daemons, capsys):
    """The same lines for a VM of the libvirt driver: libvirtd starts QEMU
    as its configured user (Debian: libvirt-qemu, the tests' libvirtd
    leaves qemu.conf's user at that default) and each virtiofsd through
    vmd's wrapper. Reported, and checked only for what vmd gives them."""
    env.write_settings(driver="libvirt", libvirt_uri=lv.uri)
    d = daemons()
    d.define("auditlv", keys=[{"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
             disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}])
    d.ctl("reload", check=0)
    d.wait_state("auditlv", "running", ready=True, timeout=180)
    rows = []
    try:
        qemus = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                 any(a.startswith("guest=vmd-auditlv") for a in cmdline_or_empty(int(p)))]
        assert len(qemus) == 1, qemus
        st = status(qemus[0])
        rows.append(audit_line("libvirt-qemu", "auditlv", qemus[0], st, len(fds(qemus[0]))))
        # The virtiofsd libvirt started (through vmd's wrapper), and the
        # sandboxed process of each.
        run_dir = env.run_dir("auditlv")
        outer = []
        for f in sorted(os.listdir(run_dir)):
            if f.startswith("fs") and f.endswith(".pid"):
                with open(os.path.join(run_dir, f)) as fh:
                    outer.append(int(fh.read()))
        for pid in outer + [k for o in outer for k in children(o)]:
            argv = cmdline(pid)
            source = share_of(next((a.split("source=", 1)[1].split(",")[0] for a in argv if "source=" in a), "?"))
            kind = "lv-virtiofsd-outer" if pid in outer else "lv-virtiofsd-inner"
            vst = status(pid)
            rows.append(audit_line(kind, source, pid, vst, len(fds(pid))))
            assert vst["NoNewPrivs"] == "1" and vst["Seccomp"] == "2", vst
            # Both shares are read-only: vmd's wrapper drops the rest.
            allowed = 0 if source.endswith(":nix-store") else CAPS_RO
            assert int(vst["CapEff"], 16) & ~allowed == 0, (kind, source, vst["CapEff"])
        with capsys.disabled():
            print("\nchild audit (libvirt driver):")
            for r in rows:
                print("  " + r)
        assert any(r.startswith("libvirt-qemu") for r in rows), rows
    finally:
        d.stop()
