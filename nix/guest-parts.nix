# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the tiny guest (tiny-guest.nix) and the image guest (image-guest.nix)
# share: the build helper and the derivations made from host files that
# tests/guest/build stages in `inputs` (a Debian kernel and its module
# subset, busybox-static, qemu-ga and ip/wg with their libraries).
{ inputs }:
rec {
  system = "x86_64-linux";
  import' = name: builtins.path { path = inputs + "/${name}"; name = "vmd-input-${name}"; };
  bbSrc = import' "busybox";
  # The guest scripts only: the image init's C source is not a script, and
  # a change to it must not rebuild the tiny guest.
  scripts = builtins.path {
    path = ../images/guest;
    name = "vmd-guest-scripts";
    filter = path: type: builtins.match ".*\\.sh" path != null;
  };
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
}
