# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The tiny guest: a Debian kernel, busybox-static, the stage-1 and stage-2
# scripts from images/guest, qemu-ga, and ip and wg for the network. The result is laid out like a NixOS
# system toplevel (kernel, initrd, init, kernel-params), so vmd boots it
# exactly as it boots a real NixOS system.
#
# There is no nixpkgs and no network on the build machines, so every input is
# a host file imported by content. tests/guest/build stages them and calls:
#   nix-build nix/tiny-guest.nix --arg inputs /path/to/stage
{ inputs }:
let
  parts = import ./guest-parts.nix { inherit inputs; };
  inherit (parts) mk scripts busybox linux qemu-ga nettools;
  initrd = mk "initrd" "initrd.sh" {
    inherit busybox linux;
    init = "${scripts}/stage-1.sh";
    mounts = "${scripts}/vmd-mounts.sh";
    # What stage 1 needs to reach the store and the disks; everything else
    # loads in stage 2 from the store.
    modules = "virtio_pci virtio_blk virtio_console virtiofs ext4 crc32c_generic";
  };
in
mk "vmd-tiny-guest" "toplevel.sh" {
  inherit busybox linux initrd scripts;
  qemuGa = qemu-ga;
  inherit nettools;
  stage2 = "${scripts}/stage-2.sh";
  kernelParams = "loglevel=4";
}
