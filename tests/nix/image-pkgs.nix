# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stand-ins for the nixpkgs attributes nix/image-guest-pkgs.nix uses, so it
# evaluates (and its module trees build) without nixpkgs. Each names the
# nixpkgs file whose interface it copies (NixOS/nixpkgs, read at the
# revisions described in the README). Packages are names with a /fake/
# path; the builders are derivations run by /bin/sh of this host with its
# own tools (kmod, xz), so the module trees really build.
#
#   lib      nixpkgs' lib
#   modules  null, or a directory with lib/modules/VERSION (plain .ko files
#            and modules.builtin, modules.order: the tiny guest's linux):
#            the stand-in kernel is that, compressed with xz as nixpkgs'
#            kernels are (common-config.nix: MODULE_COMPRESS_XZ)
#   version  the kernel's modDirVersion
{ lib, modules ? null, version ? "6.12.0" }:
let
  fake = name: { type = "derivation"; inherit name; outPath = "/fake/${name}"; };
  inherit (import ./fake-pkgs.nix { vmdPackage = null; }) runCommand;

  # pkgs/os-specific/linux/kernel/manual-config.nix: $out/bzImage (the
  # platform's linux-kernel.target), $out/lib/modules/$modDirVersion.
  kernel =
    if modules == null then fake "linux-${version}" // { modDirVersion = version; inherit version; }
    else runCommand "linux-${version}" { src = modules; } ''
      mkdir -p $out/lib/modules
      cp -r $src/lib/modules/${version} $out/lib/modules/
      chmod -R u+w $out
      find $out/lib/modules -name '*.ko' -exec xz {} +
      depmod -b $out ${version}
      touch $out/bzImage
    '' // { modDirVersion = version; inherit version; };
in
{
  inherit lib runCommand;

  # pkgs/top-level/linux-kernels.nix (linuxPackages.kernel)
  linuxPackages.kernel = kernel;

  # lib/systems/platforms.nix (pc: linux-kernel.target = "bzImage")
  stdenv.hostPlatform = { system = "x86_64-linux"; linux-kernel.target = "bzImage"; };

  # pkgs/os-specific/linux/kmod/aggregator.nix: one tree of all the
  # modules packages' lib/modules, depmod run over it.
  aggregateModules = modules: runCommand "kernel-modules" { inherit modules; } ''
    mkdir -p $out/lib/modules
    for m in $modules; do cp -rs $m/lib/modules/. $out/lib/modules/; done
    chmod -R u+w $out
    depmod -b $out ${version}
  '';

  # pkgs/build-support/kernel/modules-closure.{nix,sh}: the closure of
  # rootModules copied as they are (compressed), depmod run, and
  # modules.builtin and modules.order removed again.
  makeModulesClosure = { kernel, firmware, rootModules, allowMissing ? false }:
    runCommand "${kernel.name}-shrunk" { inherit kernel firmware rootModules; } ''
      for m in $rootModules; do
        modprobe --config /dev/null -d $kernel -S ${version} --show-depends "$m" >> deps
      done
      awk '$1 == "insmod" { print $2 }' deps | sort -u | while read -r ko; do
        target=$out/lib/modules/${version}/''${ko#*/lib/modules/${version}/}
        mkdir -p "$(dirname "$target")"
        cp "$ko" "$target"
      done
      mkdir -p $out/lib/modules/${version}
      depmod -b $out ${version}
    '';

  # pkgs/build-support/kernel/make-initrd.nix (contents: object/symlink,
  # compressor, prepend); evaluated only.
  makeInitrd = { name ? "initrd", contents, compressor ? "gzip -9n", prepend ? [ ] }:
    runCommand name {
      objects = map (c: c.object) contents;
      symlinks = map (c: c.symlink) contents;
      inherit compressor prepend;
    } "exit 1";

  # pkgs/top-level/stage.nix (pkgsStatic) with
  # pkgs/stdenv/generic/make-derivation.nix and
  # pkgs/os-specific/linux/busybox/default.nix; evaluated only.
  pkgsStatic = {
    stdenv.mkDerivation = args: runCommand "${args.pname}-${args.version}" {
      inherit (args) src buildPhase installPhase;
    } "exit 1";
    busybox = fake "busybox-static-x86_64-unknown-linux-musl";
  };

  # pkgs/applications/virtualization/qemu/default.nix (the ga output)
  qemu_kvm = fake "qemu_kvm" // { ga = fake "qemu-ga"; };
  # pkgs/build-support/trivial-builders/default.nix
  emptyDirectory = fake "empty-directory";

  iproute2 = fake "iproute2";
  wireguard-tools = fake "wireguard-tools";
  kmod = fake "kmod";
  xz = fake "xz";
  zstd = fake "zstd";
  gzip = fake "gzip";
  patchelf = fake "patchelf";
  cpio = fake "cpio";
}
