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
  system = "x86_64-linux";
  import' = name: builtins.path { path = inputs + "/${name}"; name = "vmd-input-${name}"; };
  bbSrc = import' "busybox";
  scripts = builtins.path { path = ../images/guest; name = "vmd-guest-scripts"; };
  builders = builtins.path { path = ./builders; name = "vmd-guest-builders"; };

  # Every build step runs under the static busybox; it picks the applet
  # from argv[1] because the binary keeps the name "busybox".
  mk = name: script: env: derivation ({
    inherit name system;
    builder = "${bbSrc}/busybox";
    args = [ "sh" "-e" "${builders}/${script}" ];
    bb = "${bbSrc}/busybox";
  } // env);

  busybox = mk "busybox" "busybox.sh" { src = bbSrc; };
  linux = mk "linux" "linux.sh" { src = import' "linux"; };
  qemu-ga = mk "qemu-ga" "copy.sh" { src = import' "qemu-ga"; };
  nettools = mk "nettools" "copy.sh" { src = import' "nettools"; };
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
  inherit busybox linux initrd;
  qemuGa = qemu-ga;
  inherit nettools;
  stage2 = "${scripts}/stage-2.sh";
  kernelParams = "loglevel=4";
}
