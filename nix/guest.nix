# SPDX-License-Identifier: LGPL-2.1-or-later
#
# NixOS guest module: makes a NixOS system bootable by vmd, per the guest
# contract in README.md ("Guest contract"). Import it into the guest's
# configuration; vmd boots config.system.build.toplevel directly.
#
# - stage 1 mounts the host's store (virtiofs tag nix-store) read-only on a
#   tmpfs root: nothing of the guest survives a reboot unless vmd hands it
#   over (key directories, persistent volumes);
# - systemd (>= 254, NixOS >= 23.11) mounts key dirs, shares and disks from
#   the systemd.mount-extra= entries vmd puts on the kernel command line;
# - a unit writes READY=1 to the io.vmd.notify port once the system is up;
# - the QEMU guest agent runs (vmd exec, vmd run DEF -- CMD).
{ config, lib, pkgs, ... }:
{
  boot.loader.grub.enable = false;
  boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_console" "virtiofs" "ext4" ];
  boot.initrd.kernelModules = [ "virtiofs" ];
  boot.kernelParams = [ "console=ttyS0" ];

  fileSystems."/" = {
    device = "none";
    fsType = "tmpfs";
    options = [ "mode=0755" "size=50%" ];
  };
  fileSystems."/nix/store" = {
    device = "nix-store";
    fsType = "virtiofs";
    options = [ "ro" ];
    neededForBoot = true;
  };

  # Nothing to activate on a read-only store shared with the host.
  nix.enable = lib.mkDefault false;

  services.qemuGuest.enable = true;

  systemd.services.vmd-notify = {
    description = "Tell vmd the guest is ready";
    wantedBy = [ "multi-user.target" ];
    # Not after multi-user.target: that target waits for what it wants.
    after = [ "qemu-guest-agent.service" "local-fs.target" ];
    unitConfig.ConditionPathExists = "/dev/virtio-ports/io.vmd.notify";
    serviceConfig.Type = "oneshot";
    script = "printf 'READY=1\\n' > /dev/virtio-ports/io.vmd.notify";
  };
}
