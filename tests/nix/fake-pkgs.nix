# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The few nixpkgs functions and packages the modules use, for evaluating
# them without nixpkgs. Packages are names with a /fake/ path; writeText is
# builtins.toFile (a real store file the test can read); runCommand and
# writeShellScriptBin are real derivations built by /bin/sh of this host
# (nix-build with the sandbox off), so the build-time `vmd check` and the
# runner really run. vmdPackage is a directory with bin/vmd: the vmd under
# test.
{ vmdPackage }:
let
  fake = name: { type = "derivation"; inherit name; outPath = "/fake/${name}"; };
  # pkgs/build-support/trivial-builders/default.nix: passthru and meta
  # reach the result, not the builder; the host's tools stand in for
  # nativeBuildInputs.
  runCommand = name: env: script:
    derivation ({
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [ "-ec" script ];
      PATH = "/usr/bin:/bin:/usr/sbin:/sbin";
    } // removeAttrs env [ "passthru" "meta" "nativeBuildInputs" ])
    // (env.passthru or { }) // { meta = env.meta or { }; };
in
{
  inherit runCommand;
  # The context (the closures a definition names) is dropped: toFile takes
  # none, and without a sandbox the builds here find the paths anyway.
  writeText = name: text: builtins.toFile name (builtins.unsafeDiscardStringContext text);
  writeShellScriptBin = name: text:
    runCommand name { inherit text; passAsFile = [ "text" ]; } ''
      mkdir -p $out/bin
      { echo '#!/bin/sh'; cat "$textPath"; } > $out/bin/${name}
      chmod 0755 $out/bin/${name}
    '' // { inherit text; };
  vmd = { type = "derivation"; name = "vmd"; outPath = vmdPackage; };
  coreutils = fake "coreutils";
  e2fsprogs = fake "e2fsprogs";
  # pkgs/applications/virtualization/qemu/default.nix (the ga output)
  qemu_kvm = fake "qemu_kvm" // { ga = fake "qemu-ga"; };
  virtiofsd = fake "virtiofsd";
  wireguard-go = fake "wireguard-go";
  iproute2 = fake "iproute2";
  gawk = fake "gawk";
  gnused = fake "gnused";
  systemd = fake "systemd";
  # flake.nix's overlay (pkgs.vmd-image-guest) is not applied here: the
  # host module builds the image guest from nix/image-guest-pkgs.nix, with
  # the nixpkgs attributes it uses standing in (image-pkgs.nix).
}
