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
#   debian   null, or the image guest tests/guest/build --image makes (its
#            kernel, busybox, qemu-ga, ip and wg, Debian's): then every
#            stand-in builds, the programs patched like nixpkgs' (their
#            loader and libraries in their own store path), so the whole
#            guest builds and boots here
{ lib, modules ? null, version ? "6.12.0", debian ? null }:
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
      ${if debian == null then "touch $out/bzImage" else "cp ${debian}/kernel $out/bzImage"}
    '' // { modDirVersion = version; inherit version; };

  # pkgs/development/libraries/glibc: the one loader every program has as
  # its interpreter.
  loaderGlibc = runCommand "glibc" { } ''
    mkdir -p $out/lib
    cp ${debian}/nettools/lib/ld-linux-x86-64.so.2 ${debian}/nettools/lib/libc.so.6 $out/lib/
  '';
  # A program as nixpkgs builds it: glibc's loader as its interpreter, its
  # libraries (and theirs) found through absolute RUNPATHs.
  patched = name: from: prog: wrapper: runCommand name { } ''
    mkdir -p $out/bin $out/lib
    for l in ${from}/lib/*; do
      case $l in */ld-linux-*|*/libc.so.6) ;; *) cp $l $out/lib/ ;; esac
    done
    cp ${from}/bin/${prog} $out/bin/${if wrapper then ".${prog}-wrapped" else prog}
    chmod -R u+w $out
    for l in $out/lib/*; do patchelf --set-rpath $out/lib:${loaderGlibc}/lib $l; done
    patchelf --set-interpreter ${loaderGlibc}/lib/ld-linux-x86-64.so.2 --set-rpath $out/lib:${loaderGlibc}/lib \
      $out/bin/${if wrapper then ".${prog}-wrapped" else prog}
    ${lib.optionalString wrapper ''
      # makeWrapper's shape: a shell script in front of the ELF file.
      printf '#!/bin/sh\nexec %s "$@"\n' "$out/bin/.${prog}-wrapped" > $out/bin/${prog}
      chmod 0755 $out/bin/${prog}
    ''}
  '';
in
{
  inherit lib runCommand;

  # pkgs/top-level/linux-kernels.nix (linuxPackages.kernel)
  linuxPackages.kernel = kernel;


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

  # pkgs/build-support/kernel/make-initrd.{nix,sh} (contents: object and
  # symlink; compressor; prepend): /dev, /sys, /proc, a link per object,
  # the objects' closures copied, the prepended cpio files first.
  makeInitrd = { name ? "initrd", contents, compressor ? "gzip -9n", prepend ? [ ] }:
    runCommand name {
      objects = map (c: c.object) contents;
      symlinks = map (c: c.symlink) contents;
      exportReferencesGraph = lib.concatLists (lib.imap0 (i: c: [ "closure-${toString i}" c.object ]) contents);
      inherit compressor prepend;
    } ''
      mkdir -p root/dev root/sys root/proc $out
      set -- $symlinks
      for o in $objects; do
        mkdir -p "root$(dirname "$1")"
        ln -s "$o" "root$1"
        shift
      done
      cat closure-* | grep '^/nix/store/' | grep -v '[.]drv$' | sort -u > store-paths
      (cd root && while read -r p; do cp -a --parents "$p" .; done < ../store-paths)
      for p in $prepend; do cat "$p" >> $out/initrd; done
      (cd root && find . -print0 | sort -z | cpio --quiet -o -H newc -R +0:+0 --reproducible --null | $compressor >> $out/initrd)
    '';

  # pkgs/stdenv/generic/make-derivation.nix (buildPhase, installPhase,
  # runHook, $CC; glibc.static in buildInputs): the host's cc, static
  # against libc6-dev's libc.a.
  stdenv = {
    # lib/systems/platforms.nix (pc: linux-kernel.target = "bzImage")
    hostPlatform = { system = "x86_64-linux"; linux-kernel.target = "bzImage"; };
    mkDerivation = args: runCommand "${args.pname}-${args.version}" {
      inherit (args) src buildPhase installPhase;
      buildInputs = map toString args.buildInputs;
    } ''
      runHook() { :; }
      CC=cc
      cp -r $src build
      chmod -R u+w build
      cd build
      eval "$buildPhase"
      eval "$installPhase"
    '';
  };
  # pkgs/development/libraries/glibc/default.nix (the static output)
  glibc = fake "glibc" // { static = fake "glibc-static"; };

  # pkgs/os-specific/linux/busybox/default.nix (override { enableStatic };
  # $out/bin with applet links): Debian's busybox-static.
  busybox = {
    override = args:
      assert args.enableStatic;
      if debian == null then fake "busybox-static" else
      runCommand "busybox-static" { } ''
        mkdir -p $out/bin
        cp ${debian}/sw/bin/busybox $out/bin/busybox
        for a in $($out/bin/busybox --list); do [ -e $out/bin/$a ] || ln -s busybox $out/bin/$a; done
      '';
  };

  # pkgs/applications/virtualization/qemu/default.nix (the ga output)
  qemu_kvm = fake "qemu_kvm" // {
    ga = if debian == null then fake "qemu-ga" else patched "qemu-ga" "${debian}/qemu-ga" "qemu-ga" false;
  };
  # pkgs/build-support/trivial-builders/default.nix
  emptyDirectory = fake "empty-directory";
  # pkgs/build-support/docker/default.nix (buildLayeredImage { name, ... }:
  # a docker-archive, NAME.tar.gz)
  dockerTools.buildLayeredImage = args: fake "${args.name}.tar.gz";

  # pkgs/os-specific/linux/iproute/default.nix ($out/bin/ip) and
  # pkgs/tools/networking/wireguard-tools/default.nix (every $out/bin
  # program wrapped by makeWrapper)
  iproute2 = if debian == null then fake "iproute2" else patched "iproute2" "${debian}/nettools" "ip" false;
  wireguard-tools = if debian == null then fake "wireguard-tools" else
    patched "wireguard-tools" "${debian}/nettools" "wg" true;
  kmod = fake "kmod";
  xz = fake "xz";
  zstd = fake "zstd";
  gzip = fake "gzip";
  patchelf = fake "patchelf";
  cpio = fake "cpio";
}
