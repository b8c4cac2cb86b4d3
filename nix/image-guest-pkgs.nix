# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The image guest built from nixpkgs: what services.vmd.settings.imageSystem
# defaults to on NixOS, and the flake's packages.x86_64-linux.image-guest.
# The same guest contract as nix/image-guest.nix (the one the tests build
# offline from Debian files), with every part taken from nixpkgs:
#
#   kernel       linuxPackages.kernel's bzImage (what NixOS boots)
#   /init        vmd's image init, images/guest/image-init.c compiled static
#                against glibc.static
#   /bin         busybox built static, one link per applet: the init runs
#                /bin/sh, /bin/modprobe, /bin/acpid with PATH=/bin
#   /lib/modules the closure of what the init loads before the store is
#                mounted (makeModulesClosure, as NixOS's stage 1 does)
#   linux=       the same for what it loads later from the store (button,
#                evdev, virtio_net, wireguard), plus the initrd's own set
#   qemuga=      bin/qemu-ga -> qemu_kvm.ga's, lib/ld-linux-x86-64.so.2 ->
#                its own dynamic loader; the init starts it through that
#                loader, and its RUNPATH finds the rest in the store
#   nettools=    bin/ip (iproute2) and bin/wg (wireguard-tools, the binary
#                behind its wrapper script), with their loader
#
# nixpkgs compresses kernel modules (xz, or zstd), and the init loads them
# with busybox's modprobe, which calls finit_module() without the
# decompress flag and has no zstd: the modules are decompressed here and
# depmod is run again, so both module trees hold plain .ko files.
#
#   nix-build -E 'import ./nix/image-guest-pkgs.nix { pkgs = import <nixpkgs> { }; }'
#
# vmd: the vmd package; when given, the init and the guest scripts come
# from its source (the same revision as the vmd that boots them).
# kernel: another kernel package (anything with bzImage, lib/modules and
# modDirVersion, e.g. pkgs.linuxPackages_latest.kernel).
{ pkgs
, vmd ? null
, kernel ? pkgs.linuxPackages.kernel
}:
let
  inherit (pkgs) lib;

  guestSources =
    if vmd != null && vmd ? src then "${vmd.src}/images/guest"
    else builtins.path {
      path = ../images/guest;
      name = "vmd-image-guest-sources";
      filter = path: type: lib.hasSuffix ".sh" path || lib.hasSuffix ".c" path || lib.hasSuffix ".h" path;
    };

  version = kernel.modDirVersion;
  kernelFile = "${kernel}/${pkgs.stdenv.hostPlatform.linux-kernel.target}";

  # What the init loads before the store is mounted (virtio, the store and
  # image mounts, the overlay, the fw_cfg entry, disks) and, of those, what
  # it cannot boot without (its first `modprobe -a`).
  # crc32c_generic is loaded if there (ext4's checksums); newer kernels
  # name that driver otherwise or build it in, so it may be missing.
  # button and evdev (the ACPI power button, for acpid) are loaded first
  # thing if there, else later from the store.
  initrdModules = [ "virtio_pci" "virtio_blk" "virtio_console" "virtiofs" "overlay" "qemu_fw_cfg" "ext4" "crc32c_generic" "button" "evdev" ];
  requiredModules = lib.subtractLists [ "crc32c_generic" "button" "evdev" ] initrdModules;
  # What it loads later, from the store: the NIC, WireGuard (linux= holds
  # the initrd's set too, whence button and evdev if the initrd could not).
  storeModules = [ "virtio_net" "wireguard" ];

  # NixOS's system.modulesTree for a system with only this kernel.
  modulesTree = pkgs.aggregateModules [ kernel ];

  # makeModulesClosure keeps the kernel's compression and drops
  # modules.builtin; busybox modprobe needs plain .ko files and reads
  # modules.builtin to skip what is built in.
  moduleTree = name: rootModules: pkgs.runCommand "vmd-image-guest-${name}-${version}" {
    nativeBuildInputs = [ pkgs.kmod pkgs.xz pkgs.zstd pkgs.gzip ];
    closure = pkgs.makeModulesClosure {
      kernel = modulesTree;
      firmware = pkgs.emptyDirectory;
      inherit rootModules;
      # crc32c_generic, button and evdev may be missing: the loop below
      # checks the rest.
      allowMissing = true;
    };
    inherit version;
    tree = modulesTree;
    required = lib.concatStringsSep " " requiredModules;
  } ''
    d=$out/lib/modules/$version
    mkdir -p $out/lib/modules
    cp -r --no-preserve=mode $closure/lib/modules/$version $d
    find $d \( -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) | while read -r m; do
      case $m in
        *.xz) xz -dc "$m" > "''${m%.xz}" ;;
        *.zst) zstd -dcq "$m" > "''${m%.zst}" ;;
        *.gz) gzip -dc "$m" > "''${m%.gz}" ;;
      esac
      rm "$m"
    done
    for f in modules.builtin modules.builtin.modinfo modules.order; do
      if [ -e $tree/lib/modules/$version/$f ]; then cp $tree/lib/modules/$version/$f $d/; fi
    done
    depmod -b $out -a $version
    # What the init cannot boot without must load by this name, or be
    # built in: fail here rather than in every boot.
    for m in $required; do
      modprobe -d $out -S $version --show-depends "$m" > /dev/null || {
        echo "vmd image guest: kernel $version has no module $m (the image init loads it)" >&2
        exit 1
      }
    done
  '';

  initrdTree = moduleTree "initrd-modules" initrdModules;
  linux = moduleTree "modules" (initrdModules ++ storeModules);

  # Static against glibc with the ordinary stdenv, whose toolchain is in
  # the binary cache; pkgsStatic (musl) would want its own cross toolchain.
  # The init compiles without warnings against either libc.
  imageInit = pkgs.stdenv.mkDerivation {
    pname = "vmd-image-init";
    version = if vmd != null then vmd.version or "0" else "0";
    src = guestSources;
    buildInputs = [ pkgs.glibc.static ];
    dontConfigure = true;
    buildPhase = ''
      runHook preBuild
      $CC -static -O2 -Wall -Wextra -o image-init image-init.c
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      install -Dm0755 image-init $out/bin/image-init
      runHook postInstall
    '';
  };

  # busybox/default.nix links glibc.static in with enableStatic.
  busybox = pkgs.busybox.override { enableStatic = true; };
  # Every applet in one directory (busybox installs some into sbin), as
  # links named after the applet: busybox picks the applet from argv[0].
  busyboxBin = pkgs.runCommand "vmd-image-guest-busybox" { inherit busybox; } ''
    mkdir -p $out/bin
    ln -s $busybox/bin/busybox $out/bin/busybox
    for f in $busybox/bin/* $busybox/sbin/*; do
      a=''${f##*/}
      [ -e "$f" ] && [ "$a" != busybox ] && [ ! -e $out/bin/$a ] || continue
      ln -s $busybox/bin/busybox $out/bin/$a
    done
    for a in sh modprobe acpid ip ipcalc hostname mount; do
      [ -e $out/bin/$a ] || { echo "vmd image guest: busybox has no $a" >&2; exit 1; }
    done
  '';

  # `loader --library-path DIR/lib DIR/bin/PROG`: the programs must be ELF
  # files and share one loader. A program nixpkgs wrapped in a shell script
  # (makeWrapper, as wireguard-tools does for every program) is replaced
  # by the .NAME-wrapped ELF file next to it.
  loaderLinks = name: programs: pkgs.runCommand "vmd-image-guest-${name}" {
    nativeBuildInputs = [ pkgs.patchelf ];
    programs = lib.concatStringsSep " " (lib.mapAttrsToList (n: p: "${n}=${p}") programs);
  } ''
    mkdir -p $out/bin $out/lib
    loader=
    for np in $programs; do
      n=''${np%%=*} p=''${np#*=}
      w=$(dirname "$p")/.$(basename "$p")-wrapped
      if [ -e "$w" ]; then p=$w; fi
      if [ "$(head -c 4 "$p" | od -An -c | tr -d ' ')" != '177ELF' ]; then
        echo "vmd image guest: $p is not an ELF program" >&2
        exit 1
      fi
      interp=$(patchelf --print-interpreter "$p")
      if [ -n "$loader" ] && [ "$interp" != "$loader" ]; then
        echo "vmd image guest: $p wants $interp, not $loader" >&2
        exit 1
      fi
      loader=$interp
      ln -s "$p" $out/bin/$n
    done
    # The name the image init and vmd-net.sh run (x86_64).
    ln -s "$loader" $out/lib/ld-linux-x86-64.so.2
  '';

  guestAgent = pkgs.qemu_kvm.ga;
  qemu-ga = loaderLinks "qemu-ga" { qemu-ga = "${guestAgent}/bin/qemu-ga"; };

  nettools = loaderLinks "nettools" {
    ip = "${pkgs.iproute2}/bin/ip";
    wg = "${pkgs.wireguard-tools}/bin/wg";
  };

  # Read by the init: where the rest of the guest is in the store.
  guestPaths = "linux=${linux}\nqemuga=${qemu-ga}\nnettools=${nettools}\n";

  # Real directories and files that must not be links into the initrd's
  # /nix/store (the init mounts the host store over it), nor pull what they
  # name into the initrd: the mount points, and /etc/vmd-image-guest.
  initrdBase = pkgs.runCommand "vmd-image-guest-initrd-base.cpio" {
    nativeBuildInputs = [ pkgs.cpio ];
    inherit guestPaths;
    passAsFile = [ "guestPaths" ];
  } ''
    mkdir -p root/etc root/run root/sysroot root/nix/store root/dev root/proc root/sys
    cp $guestPathsPath root/etc/vmd-image-guest
    (cd root && find . -print0 | sort -z | cpio --quiet -o -H newc -R +0:+0 --reproducible --null) > $out
  '';

  # NixOS's scripted stage 1 uses the same builder. Uncompressed: under
  # TCG, decompressing costs more than loading.
  initrd = pkgs.makeInitrd {
    name = "vmd-image-initrd";
    compressor = "cat";
    prepend = [ "${initrdBase}" ];
    contents = [
      { object = "${imageInit}/bin/image-init"; symlink = "/init"; }
      { object = "${busyboxBin}/bin"; symlink = "/bin"; }
      # The kernel runs /sbin/modprobe for modules it wants by itself.
      { object = "${busyboxBin}/bin"; symlink = "/sbin"; }
      # A link: the init renames it once the store is mounted and links
      # /lib/modules to linux= instead.
      { object = "${initrdTree}/lib/modules"; symlink = "/lib/modules"; }
      { object = "${guestSources}/vmd-mounts.sh"; symlink = "/vmd-mounts.sh"; }
      { object = "${guestSources}/vmd-net.sh"; symlink = "/vmd-net.sh"; }
    ];
  };
in
# The NixOS-style toplevel vmd boots (nix/builders/image-toplevel.sh's
# layout). `init` is the image init itself: vmd passes init= as for any
# system, and the init, already running from the initrd, ignores it.
pkgs.runCommand "vmd-image-guest" {
  inherit kernelFile;
  initrdFile = "${initrd}/initrd";
  initFile = "${imageInit}/bin/image-init";
  kernelParams = "loglevel=4";
  systemName = pkgs.stdenv.hostPlatform.system;
  sw = busyboxBin;
  qemuGa = qemu-ga;
  inherit linux nettools;
  passthru = { inherit kernel imageInit initrd linux qemu-ga nettools guestPaths busybox; };
  meta = {
    description = "vmd's image guest: kernel, initrd and image init that boot container images";
    platforms = [ "x86_64-linux" ];
  };
} ''
  mkdir -p $out
  ln -s $kernelFile $out/kernel
  ln -s $initrdFile $out/initrd
  ln -s $initFile $out/init
  # The entrypoint's output shares the serial console: kernel errors only.
  echo "$kernelParams" > $out/kernel-params
  echo "$systemName" > $out/system
  ln -s $sw $out/sw
  ln -s $linux $out/linux
  ln -s $qemuGa $out/qemu-ga
  ln -s $nettools $out/nettools
''
