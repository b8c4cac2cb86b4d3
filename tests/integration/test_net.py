# SPDX-License-Identifier: LGPL-2.1-or-later
"""Networking: taps on a bridge and a WireGuard hub (wireguard-go here: the
host kernel has no wireguard module), with real TCG guests.

Everything happens inside a network namespace the test creates: the daemon
runs in it (ip netns exec), so its bridge, taps and hub live there and no
packet leaves it. Hub names are unique per test, so the UAPI sockets in
/run/wireguard cannot collide with anything else."""

import json
import os
import secrets
import subprocess
import time

import pytest

import conftest
from conftest import processes_mentioning


class NetNS:
    def __init__(self):
        self.name = "vmdt-" + secrets.token_hex(4)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd, check=True):
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True,
                              check=check)

    def has_link(self, name):
        return self.run("ip", "link", "show", name, check=False).returncode == 0

    def link_index(self, name):
        return int(self.run("ip", "-o", "link", "show", name).stdout.split(":", 1)[0])

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def netns():
    ns = NetNS()
    yield ns
    ns.delete()


def hub_dump(hub):
    """wg(8)'s view of the hub, by public key: (allowed ips, handshake, rx, tx)."""
    out = subprocess.run(["wg", "show", hub, "dump"], capture_output=True, text=True, check=True).stdout
    peers = {}
    for line in out.splitlines()[1:]:
        f = line.split("\t")
        peers[f[0]] = {"allowed": f[3], "handshake": int(f[4]), "rx": int(f[5]), "tx": int(f[6])}
    return peers


def read(path):
    with open(path) as f:
        return f.read().strip()


def networks(tag):
    bridge, hub = f"vb{tag}", f"vw{tag}"
    return bridge, hub, {
        bridge: {"type": "bridge", "address": "10.0.0.1/24"},
        hub: {"type": "wireguard", "address": "10.77.0.1/24", "listen_port": 51820, "endpoint": "10.0.0.1",
              "keepalive_s": 5},
    }


def start_in(netns, daemons, env):
    """A daemon inside netns."""
    real = conftest.VMD
    wrapper = os.path.join(env.bin, "vmd-in-netns")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec ip netns exec {netns.name} {real} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    conftest.VMD = wrapper
    try:
        return daemons()
    finally:
        conftest.VMD = real


def test_bridge_and_wireguard_end_to_end(env, daemons, netns):
    tag = secrets.token_hex(3)
    bridge, hub, nets = networks(tag)
    env.write_settings(networks=nets)
    # One VM with two vCPUs: a multiqueue tap.
    wg_a = {"hub": hub, "address": "10.77.0.2/32"}
    net_a = {"bridge": bridge, "address": "10.0.0.2/24"}
    d = start_in(netns, daemons, env)
    d.define("a", vcpus=2, network=net_a, wireguard=wg_a)
    d.define("b", network={"bridge": bridge, "mac": "52:54:00:00:be:ef", "address": "10.0.0.3/24"},
             wireguard={"hub": hub, "address": "10.77.0.3/32"})
    d.ctl("reload", check=0)
    d.wait_state("a", "running", ready=True)
    d.wait_state("b", "running", ready=True)
    assert netns.has_link(bridge) and netns.has_link("vm-a") and netns.has_link("vm-b")
    # The taps hang on the bridge.
    assert f"master {bridge}" in netns.run("ip", "link", "show", "vm-a").stdout

    # The guests' NICs: the given MAC, a stable auto one, two queues for a.
    assert read_guest(d, "b", "cat /sys/class/net/eth0/address") == "52:54:00:00:be:ef"
    mac_a = read_guest(d, "a", "cat /sys/class/net/eth0/address")
    assert mac_a.startswith("52:54:00:") and mac_a != "52:54:00:00:be:ef"
    assert read_guest(d, "a", "ls /sys/class/net/eth0/queues").split() == ["rx-0", "rx-1", "tx-0", "tx-1"]

    # Over the bridge, both ways.
    exec_ok(d, "a", "ping -c 2 -W 5 10.0.0.3")
    exec_ok(d, "b", "ping -c 2 -W 5 10.0.0.2")

    # Over WireGuard: each VM reaches the hub's address, and the hub shows
    # a handshake and growing counters for exactly that VM's key.
    keys = env.settings["keys_dir"]
    pub = {vm: read(f"{keys}/{vm}/wireguard/publickey") for vm in ("a", "b")}
    conf = read(f"{keys}/a/wireguard/wg0.conf")
    assert "Address = 10.77.0.2/32" in conf and "Endpoint = 10.0.0.1:51820" in conf
    assert "AllowedIPs = 10.77.0.0/24" in conf
    assert os.stat(f"{keys}/a/wireguard/wg0.conf").st_mode & 0o777 == 0o600
    for vm in ("a", "b"):
        exec_ok(d, vm, "ping -c 2 -W 10 10.77.0.1")
    # Guest to guest through the hub (it forwards on that interface only).
    exec_ok(d, "a", "ping -c 2 -W 10 10.77.0.3")
    assert netns.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
    before = hub_dump(hub)
    assert set(before) == set(pub.values())
    for vm in ("a", "b"):
        p = before[pub[vm]]
        assert p["handshake"] > 0 and p["rx"] > 0 and p["tx"] > 0, (vm, p)
    assert before[pub["a"]]["allowed"] == "10.77.0.2/32"
    exec_ok(d, "a", "ping -c 3 -W 5 10.77.0.1")
    after = hub_dump(hub)
    assert after[pub["a"]]["rx"] > before[pub["a"]]["rx"]
    assert after[pub["a"]]["tx"] > before[pub["a"]]["tx"]
    # The hub's address is not on the bridge: those packets went through
    # the tunnel (wg0's own counters in the guest say the same).
    assert int(read_guest(d, "a", "cat /sys/class/net/wg0/statistics/tx_bytes")) > 0

    # A restart keeps the key, the MAC and the peer.
    pid = d.status()["a"]["pid"]
    d.ctl("restart", "a", check=0)
    d.wait_state("a", "running", ready=True, pid_not=pid)
    assert read(f"{keys}/a/wireguard/publickey") == pub["a"]
    assert read_guest(d, "a", "cat /sys/class/net/eth0/address") == mac_a
    exec_ok(d, "a", "ping -c 2 -W 10 10.77.0.1")
    assert set(hub_dump(hub)) == set(pub.values())

    # A crash takes the tap with it: the new QEMU gets a new tap (vmd
    # refuses to reuse a link of that name, so the old one must be gone).
    index = netns.link_index("vm-a")
    pid = d.status()["a"]["pid"]
    os.kill(pid, 9)
    d.wait_state("a", "running", ready=True, pid_not=pid)
    assert netns.link_index("vm-a") != index
    assert f"master {bridge}" in netns.run("ip", "link", "show", "vm-a").stdout
    exec_ok(d, "b", "ping -c 2 -W 5 10.0.0.2")

    # A definition that clashes is refused whole; nothing changes.
    d.define("c", network={"bridge": bridge, "mac": "52:54:00:00:be:ef"})
    p = d.ctl("reload")
    assert p.returncode != 0
    assert "both have mac 52:54:00:00:be:ef" in p.stdout + p.stderr
    assert "c" not in d.status()
    d.undefine("c")

    # Removing b removes its peer and its tap; a keeps running untouched.
    d.undefine("b")
    d.ctl("reload", check=0)
    d.wait_for(lambda: not netns.has_link("vm-b"), "b's tap to go")
    assert set(hub_dump(hub)) == {pub["a"]}
    # Its key directory stays (keys are never deleted).
    assert read(f"{keys}/b/wireguard/publickey") == pub["b"]

    # Stopping the daemon takes down what it made: the bridge, the hub.
    assert d.stop() == 0
    assert not netns.has_link(bridge) and not netns.has_link(hub) and not netns.has_link("vm-a")
    assert not os.path.exists(f"/run/wireguard/{hub}.sock")
    assert not [p for p in processes_mentioning(hub)]


def exec_ok(d, vm, cmd):
    p = d.ctl("exec", vm, "--", "sh", "-c", cmd)
    assert p.returncode == 0, f"{vm}: {cmd}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def read_guest(d, vm, cmd):
    return exec_ok(d, vm, cmd).strip()


def test_existing_bridge_is_adopted_and_kept_and_hub_survives_daemon_restart(env, daemons, netns):
    tag = secrets.token_hex(3)
    bridge, hub, nets = networks(tag)
    netns.run("ip", "link", "add", bridge, "type", "bridge")
    env.write_settings(networks=nets)
    d = start_in(netns, daemons, env)
    assert "bridge adopted" in d.output()
    # The address was added to the adopted bridge.
    assert "10.0.0.1/24" in netns.run("ip", "addr", "show", bridge).stdout
    hub_pid = [pid for pid, cmd in processes_mentioning(hub) if "wireguard-go" in cmd]
    assert len(hub_pid) == 1
    with open(f"/proc/{hub_pid[0]}/status") as f:
        assert "Seccomp:\t2" in f.read()
    key = read(os.path.join(env.settings["state_dir"], "networks", hub, "publickey"))
    mode = os.stat(os.path.join(env.settings["state_dir"], "networks", hub, "privatekey")).st_mode
    assert mode & 0o777 == 0o600

    # --keep-running leaves the hub for the next daemon, which adopts it.
    d.proc.send_signal(__import__("signal").SIGUSR2)
    assert d.proc.wait(timeout=60) == 75
    assert [pid for pid, cmd in processes_mentioning(hub) if "wireguard-go" in cmd] == hub_pid
    d2 = start_in(netns, daemons, env)
    assert f"adopted wireguard-go (pid {hub_pid[0]})" in d2.output()
    assert read(os.path.join(env.settings["state_dir"], "networks", hub, "publickey")) == key

    # wireguard-go dies: the daemon starts another and configures it.
    os.kill(hub_pid[0], 9)
    d2.wait_for(lambda: "wireguard-go restarted" in d2.output(), "the hub to restart")
    dump = subprocess.run(["wg", "show", hub], capture_output=True, text=True, check=True).stdout
    assert key in dump and "listening port: 51820" in dump

    # The daemon crashes: the hub outlives it (as VMs do), and the next
    # daemon adopts the restarted wireguard-go instead of tripping over it.
    hub_pid = [pid for pid, cmd in processes_mentioning(hub) if "wireguard-go" in cmd]
    assert len(hub_pid) == 1
    d2.proc.kill()
    d2.proc.wait(timeout=30)
    d3 = start_in(netns, daemons, env)
    assert f"adopted wireguard-go (pid {hub_pid[0]})" in d3.output()
    assert [pid for pid, cmd in processes_mentioning(hub) if "wireguard-go" in cmd] == hub_pid

    assert d3.stop() == 0
    # The adopted bridge stays (vmd did not make it); the hub goes.
    assert netns.has_link(bridge) and not netns.has_link(hub)
    assert not os.path.exists(f"/run/wireguard/{hub}.sock")


def test_bad_network_input(env, netns, daemons):
    tag = secrets.token_hex(3)
    bridge, hub, nets = networks(tag)
    env.write_settings(networks=nets)
    cases = {
        "nobridge": ({"network": {"bridge": "vmbr9"}}, 'network.bridge: "vmbr9" is not a bridge'),
        "outside": ({"wireguard": {"hub": hub, "address": "10.78.0.2/32"}},
                    "wireguard.address: 10.78.0.2/32 is outside 10.77.0.0/24"),
        "badmac": ({"network": {"bridge": bridge, "mac": "01:00:5e:00:00:01"}},
                   "network.mac: must be \"auto\" or a unicast MAC address"),
    }
    for name, (fields, error) in cases.items():
        p = env.vmd("check", "-c", env.config, env.define(name, **fields))
        assert p.returncode == 1 and error in p.stdout, (name, p.stdout, p.stderr)
    # Two VMs with one address: the error names both.
    p = env.vmd("check", "-c", env.config,
                env.define("x1", wireguard={"hub": hub, "address": "10.77.0.9/32"}),
                env.define("x2", wireguard={"hub": hub, "address": "10.77.0.9/32"}))
    assert p.returncode == 1 and "VMs x2 and x1" in p.stdout and "both have address 10.77.0.9" in p.stdout
    # vmd run cannot join a hub.
    p = env.run(env.define("runwg", wireguard={"hub": hub, "address": "10.77.0.5/32"}), "true")
    assert p.returncode == 1 and "needs vmd daemon" in p.stdout + p.stderr

    # Settings with an interface name too long: the daemon does not start
    # and changes nothing.
    env.write_settings(networks={"vmbridge-too-long": {"type": "bridge"}})
    p = subprocess.run(["ip", "netns", "exec", netns.name, conftest.VMD, "daemon",
                        "-c", env.config], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "networks.vmbridge-too-long: must be 1..15 characters" in p.stdout + p.stderr
    # A name that is taken by a link of another kind: refused, and the
    # bridge made before it is undone.
    netns.run("ip", "link", "add", "taken0", "type", "veth", "peer", "name", "taken1")
    env.write_settings(networks={"aa" + tag: {"type": "bridge"}, "taken0": {"type": "bridge"}})
    p = subprocess.run(["ip", "netns", "exec", netns.name, conftest.VMD, "daemon",
                        "-c", env.config], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "network taken0: setting up the bridge" in p.stderr and "another kind" in p.stderr
    assert not netns.has_link("aa" + tag)


def test_run_on_a_bridge(env, netns):
    tag = secrets.token_hex(3)
    bridge, hub, nets = networks(tag)
    env.write_settings(networks={bridge: nets[bridge]})
    d = env.define("solo", network={"bridge": bridge, "address": "10.0.0.7/24"})
    p = subprocess.run(["ip", "netns", "exec", netns.name, conftest.VMD, "run", "-c", env.config, d, "--",
                        "sh", "-c", "ip -o -4 addr show dev eth0; ping -c 1 -W 5 10.0.0.1"],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "inet 10.0.0.7/24" in p.stdout
    # vmd run made the bridge, and removed it and the tap again.
    assert not netns.has_link(bridge) and not netns.has_link("vm-solo")


def test_two_runs_share_a_bridge(env, netns):
    """The vmd run that made the bridge leaves it while another VM is on it."""
    tag = secrets.token_hex(3)
    bridge, hub, nets = networks(tag)
    env.write_settings(networks={bridge: nets[bridge]})
    da = env.define("ra", network={"bridge": bridge, "address": "10.0.0.8/24"})
    db = env.define("rb", network={"bridge": bridge, "address": "10.0.0.9/24"})

    def run(d, script):
        return subprocess.Popen(["ip", "netns", "exec", netns.name, conftest.VMD, "run", "-q", "-c", env.config,
                                 d, "--", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    # ra makes the bridge and ends once rb's command has pinged it (its
    # kernel counts the echo requests); rb then waits for ra to be gone
    # and needs the bridge still.
    echos = ("awk '/^Icmp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == \"InEchos\") n = i; next }"
             " exit !($n > 0) }' /proc/net/snmp")
    a = run(da, f"i=0; until {echos}; do usleep 200000; i=$((i+1)); [ $i -lt 1500 ] || exit 9; done")
    end = time.time() + 60
    while not netns.has_link(bridge) and time.time() < end and a.poll() is None:
        time.sleep(0.05)
    assert netns.has_link(bridge), a.communicate()
    b = run(db, "i=0; until ping -c 1 -W 1 10.0.0.8 >/dev/null; do i=$((i+1)); [ $i -lt 300 ] || exit 9; done;"
                " i=0; while ping -c 1 -W 1 10.0.0.8 >/dev/null; do i=$((i+1)); [ $i -lt 300 ] || exit 8; done;"
                " ping -c 2 -W 5 10.0.0.1")
    out_a, err_a = a.communicate(timeout=300)
    assert a.returncode == 0, err_a
    assert "bridge left in place: 1 other port(s) still on it" in err_a
    out_b, err_b = b.communicate(timeout=300)
    assert b.returncode == 0, err_b
    assert " 0% packet loss" in out_b
    # rb found the bridge, so it is not rb's to delete either.
    assert netns.has_link(bridge) and not netns.has_link("vm-ra") and not netns.has_link("vm-rb")
