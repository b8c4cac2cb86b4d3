# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vmd as a nixpkgs package:  pkgs.callPackage ./nix/package.nix { }
# (flake.nix's overlay does exactly that, as pkgs.vmd).
#
# The settings vmd falls back to when /etc/vmd/vmd.json leaves them out
# point into the store here, so they resolve on NixOS: QEMU from qemu_kvm,
# the Rust virtiofsd (nixpkgs' QEMU ships none), wireguard-go. libvirt,
# which vmd loads only when a VM uses the libvirt driver, is found by its
# absolute path, since NixOS has no library search path for dlopen().
{ lib
, stdenv
, meson
, ninja
, pkg-config
, jansson
, libarchive
, libseccomp
, libsodium
, libnl
, libvirt
, qemu_kvm
, virtiofsd
, wireguard-go
}:

stdenv.mkDerivation {
  pname = "vmd";
  version = "0.1.0";

  # Only what the build reads: a change to the tests or the Nix files does
  # not rebuild the package.
  src = lib.cleanSourceWith {
    src = ./..;
    filter = path: type:
      let rel = lib.removePrefix (toString ./.. + "/") (toString path); in
      lib.any (p: rel == p || lib.hasPrefix (p + "/") rel) [
        "meson.build" "meson_options.txt" "vmd" "net" "share" "images" "tests"
      ];
  };

  nativeBuildInputs = [ meson ninja pkg-config ];
  buildInputs = [ jansson libarchive libseccomp libsodium libnl libvirt ];

  mesonFlags = [
    # bin/vmd, as NixOS expects (lib.getExe); the unit follows.
    (lib.mesonOption "sbindir" "bin")
    (lib.mesonOption "default_qemu" "${qemu_kvm}/bin/qemu-system-x86_64")
    (lib.mesonOption "default_virtiofsd" "${virtiofsd}/bin/virtiofsd")
    (lib.mesonOption "default_wireguard_go" "${wireguard-go}/bin/wireguard-go")
    (lib.mesonOption "libvirt_library" "${libvirt}/lib/libvirt.so.0")
    (lib.mesonOption "libvirt_qemu_library" "${libvirt}/lib/libvirt-qemu.so.0")
    (lib.mesonBool "fuzzing" false)
  ];

  # The unit tests need network and mount namespaces, which the build
  # sandbox does not give; `tests/run-all` runs them on a real host.
  doCheck = false;

  passthru = { inherit qemu_kvm virtiofsd wireguard-go; };

  meta = {
    description = "Declarative microVMs for Nix-built system closures";
    license = lib.licenses.lgpl21Plus;
    platforms = lib.platforms.linux;
    mainProgram = "vmd";
  };
}
