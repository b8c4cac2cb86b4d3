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
# - the QEMU guest agent runs (vmd exec, vmd run DEF -- CMD);
# - the NIC gets the address vmd passes as ip=ADDR:::NETMASK:::off (a VM
#   with "network": {"address": ...}), and wg0 comes up from the wg0.conf vmd
#   writes into the key directory at /etc/wireguard (a VM with "wireguard"),
#   through networking.wg-quick.
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

  # The address on the bridge, from vmd's ip= parameter, on the first
  # Ethernet NIC (the tap is the only one).
  networking.useDHCP = lib.mkDefault false;
  systemd.services.vmd-network = {
    description = "Address from vmd's ip= kernel parameter";
    wantedBy = [ "network.target" ];
    before = [ "network.target" ];
    after = [ "systemd-udevd.service" ];
    unitConfig.ConditionKernelCommandLine = "ip";
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
    path = [ pkgs.iproute2 pkgs.gawk pkgs.coreutils ];
    script = ''
      conf=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^ip=//p' | tail -n 1)
      IFS=: read -r addr _ gw mask _ dev _ <<< "$conf"
      if [ -z "$dev" ]; then
        for d in /sys/class/net/*; do
          [ -e "$d/device" ] && { dev=''${d##*/}; break; }
        done
      fi
      prefix=$(awk -v m="$mask" 'BEGIN { n = split(m, o, "."); p = 0
        for (i = 1; i <= n; i++) { v = o[i]; while (v > 0) { p += v % 2; v = int(v / 2) } } print p }')
      ip link set "$dev" up
      ip addr replace "$addr/$prefix" dev "$dev"
      if [ -n "$gw" ]; then ip route replace default via "$gw"; fi
    '';
  };

  # WireGuard: vmd writes /etc/wireguard/wg0.conf (the VM's key and address,
  # the host hub as peer) into the read-only key directory it mounts there.
  boot.kernelModules = [ "wireguard" ];
  networking.wg-quick.interfaces.wg0.configFile = "/etc/wireguard/wg0.conf";
  systemd.services.wg-quick-wg0.unitConfig = {
    ConditionPathExists = "/etc/wireguard/wg0.conf";
    RequiresMountsFor = "/etc/wireguard";
  };

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
