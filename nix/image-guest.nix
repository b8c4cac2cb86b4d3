# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The image guest: what vmd boots for a definition that names an `image`
# (host setting image_system). The same kernel, busybox, qemu-ga and ip/wg
# as the tiny guest (guest-parts.nix), and an initrd whose /init is vmd's
# image init (images/guest/image-init.c, compiled static by
# tests/guest/build into the staging directory): PID 1 for the VM's whole
# life, it runs the image from the virtiofs tag vmd-image on an overlay.
# Laid out as a NixOS-style toplevel: kernel, initrd, init, kernel-params.
#
#   tests/guest/build --image   (nix-build nix/image-guest.nix --arg inputs STAGE)
{ inputs }:
let
  parts = import ./guest-parts.nix { inherit inputs; };
  inherit (parts) mk import' scripts busybox linux qemu-ga nettools;
  imageInit = import' "image-init";
  initrd = mk "image-initrd" "initrd.sh" {
    inherit busybox linux;
    init = "${imageInit}/image-init";
    mounts = "${scripts}/vmd-mounts.sh";
    net = "${scripts}/vmd-net.sh";
    # The image init reads the store paths of what it runs from the store
    # (qemu-ga, ip and wg, the rest of the modules) here.
    guestPaths = "linux=${linux} qemuga=${qemu-ga} nettools=${nettools}";
    # What the init needs before the store is mounted: virtio, the store
    # and image mounts, the overlay, the fw_cfg entry, disks; and the ACPI
    # power button (button, evdev), so that acpid listens from the start.
    modules = "virtio_pci virtio_blk virtio_console virtiofs overlay qemu_fw_cfg ext4 crc32c_generic button evdev";
  };
in
mk "vmd-image-guest" "image-toplevel.sh" {
  inherit busybox linux initrd;
  init = "${imageInit}/image-init";
  qemuGa = qemu-ga;
  inherit nettools;
  # The entrypoint's output shares the serial console: kernel errors only.
  kernelParams = "loglevel=4";
}
