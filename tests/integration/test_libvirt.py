# SPDX-License-Identifier: LGPL-2.1-or-later
"""The libvirt driver, with real TCG guests, each test against libvirtd
instances of its own (libvirtd.py): the same definitions run as transient
libvirt domains, followed through libvirt's events, streams and guest-agent
API, under vmd's restart policy."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest

import conftest
from conftest import processes_mentioning
from libvirtd import PrivateLibvirtd


def libvirt_settings(env, lv, **extra):
    env.write_settings(driver="libvirt", libvirt_uri=lv.uri, restart_delay_min_ms=100, **extra)


def exec_ok(d, vm, *cmd, timeout=120):
    p = d.ctl("exec", "--timeout", str(timeout), vm, "--", *cmd, timeout=timeout + 30)
    assert p.returncode == 0, f"{vm}: {cmd}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def share_pids(env, name):
    d = env.run_dir(name)
    pids = []
    for f in sorted(os.listdir(d)):
        if re.fullmatch(r"fs\d+\.pid", f):
            with open(os.path.join(d, f)) as fh:
                pids.append(int(fh.read()))
    return pids


def test_boot_exec_store_and_confinement(env, lv, daemons):
    libvirt_settings(env, lv)
    data = os.path.join(env.root, "data")
    os.makedirs(data)
    with open(os.path.join(data, "f"), "w") as f:
        f.write("from the host\n")
    d = daemons()
    d.define("lva", disks=[{"name": "scratch", "size_mib": 64, "mount": "/var"}],
             keys=[{"name": "wireguard", "target": "/etc/wireguard", "generate": "wireguard"}],
             shares=[{"tag": "data", "source": data, "target": "/data"}])
    d.ctl("reload", check=0)
    st = d.wait_state("lva", "running", ready=True)
    assert st["driver"] == "libvirt" and st["host"] == "local" and st["domain"] == "vmd-lva"
    assert st["pid"] is None
    # A libvirt domain, as virsh sees it.
    assert lv.domains() == ["vmd-lva"]
    xml = lv.virsh("dumpxml", "vmd-lva").stdout
    assert "urn:x-vmd:domain:1" in xml and "<type arch='x86_64' machine='pc" in xml

    # The store over virtiofs: the guest reads what the host has.
    initrd = os.path.realpath(os.path.join(env.closure, "initrd"))
    with open(initrd, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    assert exec_ok(d, "lva", "sha256sum", initrd).split()[0] == want
    # Disk, key directory, share; read-only held on the host even after
    # the guest remounts (vmd's virtiofsd wrapper).
    out = exec_ok(d, "lva", "sh", "-c",
                  "grep ' /var ' /proc/mounts; cat /data/f; ls /etc/wireguard; echo x > /var/x && echo var-ok; "
                  "mount -o remount,rw /nix/store; touch /nix/store/vmd-test 2>&1; touch /data/g 2>&1; true")
    assert "/dev/vd" in out or "virtio-scratch" in out or "/dev/disk/by-id/virtio-scratch" in out
    assert "from the host" in out and "privatekey" in out and "var-ok" in out
    assert out.count("Read-only file system") == 2, out
    assert not os.path.exists("/nix/store/vmd-test")
    # Every virtiofsd libvirt started went through vmd's wrapper: vmd's
    # seccomp filter, its pid known to vmd.
    pids = share_pids(env, "lva")
    assert len(pids) == 3
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"virtiofsd" in f.read()
    # The console reaches the VM's log through libvirt.
    exec_ok(d, "lva", "sh", "-c", "echo console-check-$((6*7)) > /dev/ttyS0")
    d.wait_for(lambda: "console-check-42" in d.ctl("logs", "lva", check=0).stdout, "the console line")

    assert d.stop() == 0
    assert lv.domains(all_=True) == []


def test_restart_policy_through_libvirt(env, lv, daemons):
    libvirt_settings(env, lv)
    d = daemons()
    d.define("lvr")
    d.ctl("reload", check=0)
    d.wait_state("lvr", "running", ready=True)

    # Destroyed behind vmd's back: a crash to the restart policy.
    lv.virsh("destroy", "vmd-lvr")
    d.wait_for(lambda: d.status()["lvr"]["restarts"] == 1 and d.status()["lvr"]["ready"], "the restart")
    assert "destroyed through libvirt, not by vmd" in d.status()["lvr"]["last_exit"]
    assert lv.domains() == ["vmd-lvr"]

    # A virtiofsd that dies leaves the guest hung: vmd stops the domain
    # and starts it again, as with its own QEMU.
    os.kill(share_pids(env, "lvr")[0], signal.SIGKILL)
    d.wait_for(lambda: d.status()["lvr"]["restarts"] == 2 and d.status()["lvr"]["ready"], "the share restart",
               timeout=180)
    assert d.status()["lvr"]["last_exit"].startswith("share-failed: virtiofsd for nix-store"), d.status()

    # The guest powers off: with restart "never", it stays down.
    d.define("lvr", restart="never")
    d.ctl("reload", check=0)
    d.wait_state("lvr", "running", ready=True)
    d.ctl("exec", "lvr", "--", "poweroff", check=None)
    d.wait_state("lvr", "stopped")
    assert d.status()["lvr"]["last_exit"].startswith("poweroff")
    assert lv.domains() == []
    assert d.stop() == 0


def test_libvirtd_restart_and_daemon_adoption(env, lv, daemons):
    libvirt_settings(env, lv)
    d = daemons()
    d.define("lvk")
    d.ctl("reload", check=0)
    d.wait_state("lvk", "running", ready=True)
    dom_id = lv.virsh("domid", "vmd-lvk").stdout.strip()

    # libvirtd goes away and comes back: vmd reconnects, the VM is still
    # its, and still supervised.
    lv.stop()
    d.wait_for(lambda: "connection lost" in d.output(), "vmd to notice")
    p = d.ctl("exec", "lvk", "--", "true")
    assert p.returncode != 0
    lv.start()
    d.wait_for(lambda: "libvirtd is back, and so is the domain" in d.output(), "vmd to reconnect", timeout=60)
    assert lv.virsh("domid", "vmd-lvk").stdout.strip() == dom_id
    exec_ok(d, "lvk", "true")
    lv.virsh("destroy", "vmd-lvk")
    d.wait_for(lambda: d.status()["lvk"]["restarts"] == 1 and d.status()["lvk"]["ready"], "a restart")
    dom_id = lv.virsh("domid", "vmd-lvk").stdout.strip()

    # An upgrade (SIGUSR2) leaves the domain running; the next daemon
    # finds it by its metadata and adopts it.
    d.proc.send_signal(signal.SIGUSR2)
    assert d.proc.wait(timeout=60) == 75
    assert lv.virsh("domid", "vmd-lvk").stdout.strip() == dom_id
    d2 = daemons()
    assert "adopted (libvirt domain vmd-lvk" in d2.output()
    st = d2.status()["lvk"]
    assert st["state"] == "running" and st["ready"] and st["restarts"] == 1
    exec_ok(d2, "lvk", "true")

    # A daemon killed outright: the next one adopts it too.
    d2.proc.kill()
    d2.proc.wait(timeout=30)
    d3 = daemons()
    assert "adopted (libvirt domain vmd-lvk" in d3.output()
    assert lv.virsh("domid", "vmd-lvk").stdout.strip() == dom_id
    d3.ctl("stop", "lvk", check=0)
    assert lv.domains() == []
    assert d3.stop() == 0


FOREIGN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os>{meta}
<devices><controller type='usb' model='none'/><memballoon model='none'/></devices></domain>"""


def test_domains_vmd_did_not_make_are_left_alone(env, lv, daemons):
    libvirt_settings(env, lv)
    xml = os.path.join(env.root, "foreign.xml")
    # Without vmd's metadata, and with it but from another vmd.
    import base64
    other = base64.b64encode(json.dumps({"version": 1, "instance": "0" * 32, "definition": {
        "name": "other", "system": env.closure}, "shares": [], "ready": True}).encode()).decode()
    for name, meta in (("vmd-alien", ""),
                       ("vmd-other", f"<metadata><vmd:vm xmlns:vmd='urn:x-vmd:domain:1'>{other}</vmd:vm></metadata>")):
        with open(xml, "w") as f:
            f.write(FOREIGN.format(name=name, meta=meta))
        lv.virsh("create", xml)
    ids = {n: lv.virsh("domid", n).stdout.strip() for n in ("vmd-alien", "vmd-other")}

    d = daemons()
    d.define("mine")
    # Its domain name is taken by a domain vmd did not make: refused, and
    # the domain stays as it is.
    d.define("alien", restart="never")
    d.ctl("reload", check=0)
    d.wait_state("mine", "running", ready=True)
    d.wait_for(lambda: d.status()["alien"]["state"] in ("stopped", "failed"), "alien to fail")
    assert "start-failed" in (d.status()["alien"]["last_exit"] or "")
    d.undefine("alien")
    d.ctl("reload", check=0)
    # Restarts of the daemon adopt its own domain only.
    d.proc.send_signal(signal.SIGUSR2)
    assert d.proc.wait(timeout=60) == 75
    d2 = daemons()
    assert "other" not in d2.status() and "alien" not in d2.status()
    assert d2.stop() == 0
    assert sorted(lv.domains()) == ["vmd-alien", "vmd-other"]
    assert {n: lv.virsh("domid", n).stdout.strip() for n in ids} == ids


def test_remote_host_placement(env, daemons, lv):
    # A second "host": another libvirtd, reached by its own URI. It lacks
    # one closure (hidden in its namespace) to show the check.
    missing = subprocess.run(["nix-store", "--add", make_closure_copy(env)], capture_output=True, text=True,
                             check=True).stdout.strip()
    b = PrivateLibvirtd(env.root, name="libvirt-b", hide=[missing])
    try:
        env.write_settings(libvirt_uri=lv.uri, hosts={"b": {"libvirt_uri": b.uri, "accel": "tcg"}},
                           restart_delay_min_ms=100)
        d = daemons()
        d.define("near")
        d.define("far", host="b")
        d.define("nowhere", host="b", system=missing, restart="never")
        d.ctl("reload", check=0)
        d.wait_state("far", "running", ready=True)
        d.wait_state("near", "running", ready=True)
        st = d.status()
        assert st["far"]["host"] == "b" and st["far"]["driver"] == "libvirt"
        assert st["near"]["host"] == "local" and st["near"]["driver"] == "qemu" and st["near"]["pid"]
        assert b.domains() == ["vmd-far"] and lv.domains() == []
        assert exec_ok(d, "far", "hostname").strip() == "far"
        d.wait_for(lambda: st_of(d, "nowhere") in ("stopped", "failed"), "nowhere to fail")
        last = d.status()["nowhere"]["last_exit"] or ""
        assert "start-failed" in last, last
        assert f"the closure {missing} is not on host b" in d.output()
        assert "nix copy --to ssh://HOST" in d.output()
        assert d.stop() == 0
        assert b.domains() == []
    finally:
        b.close()
        subprocess.run(["nix-store", "--delete", missing], capture_output=True)


def st_of(d, name):
    return d.status().get(name, {}).get("state")


def make_closure_copy(env):
    """A closure with another store path: links to the real one's parts."""
    src = os.path.join(env.root, "copy-system")
    os.makedirs(src)
    for part in ("kernel", "initrd", "init"):
        os.symlink(os.path.realpath(os.path.join(env.closure, part)), os.path.join(src, part))
    return src


def test_two_drivers_at_once_and_vmd_run(env, lv, daemons):
    env.write_settings(libvirt_uri=lv.uri)
    d = daemons()
    d.define("viaqemu")
    d.define("vialibvirt", driver="libvirt")
    d.ctl("reload", check=0)
    d.wait_state("viaqemu", "running", ready=True)
    d.wait_state("vialibvirt", "running", ready=True)
    st = d.status()
    assert st["viaqemu"]["driver"] == "qemu" and st["vialibvirt"]["driver"] == "libvirt"
    assert exec_ok(d, "viaqemu", "hostname").strip() == "viaqemu"
    assert exec_ok(d, "vialibvirt", "hostname").strip() == "vialibvirt"
    assert lv.domains() == ["vmd-vialibvirt"]
    # The default driver is qemu: the next daemon looks for libvirt
    # domains where the VMs' run directories say they are, and adopts both.
    d.proc.send_signal(signal.SIGUSR2)
    assert d.proc.wait(timeout=60) == 75
    d = daemons()
    out = d.output()
    assert "viaqemu: adopted (QEMU pid" in out and "vialibvirt: adopted (libvirt domain vmd-vialibvirt" in out
    exec_ok(d, "vialibvirt", "true")
    assert d.stop() == 0

    # vmd run through libvirt: the command's status, and a domain that
    # dies with vmd's connection when vmd is killed.
    run = env.define("once", driver="libvirt")
    p = env.run(run, "sh", "-c", "exit 7")
    assert p.returncode == 7, p.stderr
    proc = env.popen(run, "sleep", "600")
    env.wait_ready(proc)
    assert lv.domains() == ["vmd-once"]
    proc.kill()
    proc.wait(timeout=30)
    end = time.time() + 60
    while lv.domains() and time.time() < end:
        time.sleep(0.1)
    assert lv.domains() == []
    # The next run sweeps what the killed one left.
    p = env.run(run, "true")
    assert p.returncode == 0, p.stderr


def test_bridge_network_through_libvirt(env, daemons):
    """libvirt makes the tap (vmd names it) on vmd's bridge; a libvirt VM and
    a QEMU-driver VM share the bridge. Everything in a namespace of the
    test's own, libvirtd too."""
    import secrets

    from test_net import NetNS, start_in

    ns = NetNS()
    lvn = None
    try:
        os.chmod(env.root, 0o711)
        lvn = PrivateLibvirtd(env.root, netns=ns.name)
        bridge = f"vb{secrets.token_hex(3)}"
        env.write_settings(libvirt_uri=lvn.uri, networks={bridge: {"type": "bridge", "address": "10.0.0.1/24"}})
        d = start_in(ns, daemons, env)
        d.define("lnet", driver="libvirt", vcpus=2, network={"bridge": bridge, "address": "10.0.0.2/24"})
        d.define("qnet", network={"bridge": bridge, "address": "10.0.0.3/24"})
        d.ctl("reload", check=0)
        d.wait_state("lnet", "running", ready=True)
        d.wait_state("qnet", "running", ready=True)
        assert f"master {bridge}" in ns.run("ip", "link", "show", "vm-lnet").stdout
        out = exec_ok(d, "lnet", "sh", "-c", "ls /sys/class/net/eth0/queues; cat /sys/class/net/eth0/address; "
                      "ping -c 2 -W 5 10.0.0.1 >/dev/null && ping -c 2 -W 5 10.0.0.3 >/dev/null && echo pings-ok")
        assert "rx-1" in out and "tx-1" in out and "pings-ok" in out
        assert lvn.domains() == ["vmd-lnet"]
        assert d.stop() == 0
        assert not ns.has_link("vm-lnet") and not ns.has_link(bridge)
    finally:
        if lvn:
            lvn.close()
        ns.delete()


def test_console_through_libvirt(env, lv, daemons):
    # The console stream of a libvirt domain: output, input, a writer and
    # an observer, and a crash with the restart that follows.
    from test_console import Pty, console
    libvirt_settings(env, lv)
    d = daemons()
    d.define("lvc")
    d.ctl("reload", check=0)
    d.wait_state("lvc", "running", ready=True, timeout=180)
    t = Pty(console(env, "lvc"))
    watcher = Pty(console(env, "lvc", "--read-only"))
    try:
        t.expect("connected to lvc's console;")
        t.expect("built-in shell")
        t.type("echo lv-$((8*8))\r")
        t.expect("lv-64")
        watcher.expect("lv-64")
        p = subprocess.run(console(env, "lvc"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0 and "lvc's console is held by uid 0" in p.stderr, p.stderr
        # Destroyed behind vmd's back: a crash, and a restart.
        lv.virsh("destroy", "vmd-lvc")
        t.expect("lvc went down; vmd restarts it", timeout=60)
        d.wait_for(lambda: d.status()["lvc"]["restarts"] == 1 and d.status()["lvc"]["ready"], "the restart",
                   timeout=180)
        t.expect("built-in shell", timeout=60)
        t.type("echo lvagain-$((9*9))\r")
        t.expect("lvagain-81")
        t.type(b"\x1d")
        assert t.wait() == 0 and t.mode_restored()
    finally:
        t.close()
        watcher.close()
