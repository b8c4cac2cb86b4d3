# SPDX-License-Identifier: LGPL-2.1-or-later
"""The stage-1 mounts (images/guest/vmd-mounts.sh, the one script the tiny
guest and nix/guest.nix both run) happen before the system's own setup: a
key directory at /etc/ssh and a disk at /var are there when activation
writes /etc/ssh/sshd_config and /var/lib/nixos. The tiny guest's
vmd.guest.simulate-activation does those two writes first thing in stage 2,
as NixOS activation does."""
import os


def test_key_dir_at_etc_ssh_and_disk_at_var_are_mounted_before_activation(env):
    ssh = os.path.join(env.root, "keys", "act", "ssh")
    os.makedirs(ssh, mode=0o700)
    os.chmod(os.path.join(env.root, "keys"), 0o700)
    os.chmod(os.path.dirname(ssh), 0o700)
    with open(os.path.join(ssh, "ssh_host_ed25519_key.pub"), "w") as f:
        f.write("ssh-ed25519 AAAAhostkey host\n")
    d = env.define("act", kernel_params=["vmd.guest.simulate-activation"],
                   keys=[{"name": "ssh", "target": "/etc/ssh", "read_only": False}],
                   disks=[{"name": "var", "size_mib": 64, "mount": "/var"}])
    p = env.run(d, "sh", "-c",
                "cat /etc/ssh/ssh_host_ed25519_key.pub; readlink /etc/ssh/sshd_config;"
                " grep -E ' /var | /etc/ssh ' /proc/mounts; cat /var/lib/nixos/uid-map;"
                " stat -c %d /var /var/lib/nixos", check=0)
    lines = p.stdout.splitlines()
    # The host's key and what activation wrote, side by side in the mount.
    assert lines[0] == "ssh-ed25519 AAAAhostkey host"
    assert lines[1] == "/etc/static/ssh/sshd_config"
    assert "/dev/disk/by-id/virtio-var /var ext4 rw" in p.stdout
    assert "key-ssh /etc/ssh virtiofs rw" in p.stdout
    # /var/lib/nixos is on the disk, not on the tmpfs root underneath.
    assert "root:0" in lines
    assert lines[-1] == lines[-2]
    # The write went through to the host's key directory.
    assert os.readlink(os.path.join(ssh, "sshd_config")) == "/etc/static/ssh/sshd_config"


def test_a_mount_that_fails_in_stage1_powers_the_guest_off(env):
    """A share whose source vanished is an unknown tag for the guest: stage 1
    says so and powers off; vmd reports the failed boot at once, not after
    ready_timeout_s."""
    src = os.path.join(env.root, "data")
    os.makedirs(src)
    d = env.define("bad", kernel_params=["systemd.mount-extra=nosuchtag:/data:virtiofs:ro"])
    p = env.run(d, "true", check=2)
    assert "vmd-mounts: cannot mount nosuchtag at /data" in p.stderr
    assert "powered off before it was ready" in p.stderr
