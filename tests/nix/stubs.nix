# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stand-ins for the NixOS options that nix/host.nix and nix/guest.nix set,
# so the modules evaluate with nixpkgs' lib.evalModules alone (there is no
# nixpkgs on the build machines). Each declaration copies the name, type
# and default of the real one, from the file named next to it (NixOS/nixpkgs,
# read at the revisions described in the README); where the real type needs
# nixpkgs' utils or pkgs, the nearest lib type stands in, as noted.
# Options the real declarations have but the modules do not touch are left
# out: setting one of those would be an evaluation error here, as it should.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  unitNames = mkOption { type = types.listOf types.str; default = [ ]; };
  # nixos/lib/systemd-unit-options.nix: unitOption merges lists or equal
  # values; attrsOf anything is the closest lib type.
  unitSection = mkOption { type = types.attrsOf types.anything; default = { }; };

  # nixos/lib/systemd-unit-options.nix (commonUnitOptions, sharedOptions,
  # serviceOptions) and, for stage 2 only, stage2ServiceOptions.
  commonService = {
    enable = mkOption { type = types.bool; default = true; };
    description = mkOption { type = types.singleLineStr; default = ""; };
    wantedBy = unitNames;
    requiredBy = unitNames;
    after = unitNames;
    before = unitNames;
    wants = unitNames;
    requires = unitNames;
    bindsTo = unitNames;
    conflicts = unitNames;
    unitConfig = unitSection;
    serviceConfig = unitSection;
    path = mkOption { type = types.listOf (types.either types.package types.str); default = [ ]; };
    script = mkOption { type = types.lines; default = ""; };
    environment = mkOption { type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ])); default = { }; };
  };
  stage2Service = commonService // {
    restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    reloadTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    restartIfChanged = mkOption { type = types.bool; default = true; };
    reloadIfChanged = mkOption { type = types.bool; default = false; };
    stopIfChanged = mkOption { type = types.bool; default = true; };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; internal = true; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; internal = true; };

    # nixos/modules/system/etc/etc.nix (source: types.path; text: nullOr lines;
    # mode: str, default "symlink")
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (types.submodule ({ name, config, ... }: {
        options = {
          enable = mkOption { type = types.bool; default = true; };
          target = mkOption { type = types.str; default = name; };
          text = mkOption { type = types.nullOr types.lines; default = null; };
          source = mkOption { type = types.path; };
          mode = mkOption { type = types.str; default = "symlink"; };
        };
        config.source = lib.mkIf (config.text != null)
          (lib.mkDefault (builtins.toFile "etc-${lib.replaceStrings [ "/" ] [ "-" ] name}" config.text));
      }));
    };

    # nixos/modules/system/boot/systemd.nix (services: attrsOf the
    # stage-2 service submodule; package: the systemd package)
    systemd.services = mkOption { type = types.attrsOf (types.submodule { options = stage2Service; }); default = { }; };
    systemd.package = mkOption { type = types.package; };

    # nixos/modules/system/boot/systemd/initrd.nix (services: the stage-1
    # submodule, without the switch options; storePaths: listOf str-like)
    boot.initrd.systemd = {
      enable = mkOption { type = types.bool; default = false; };
      services = mkOption { type = types.attrsOf (types.submodule { options = commonService; }); default = { }; };
      storePaths = mkOption { type = types.listOf (types.either types.str types.path); default = [ ]; };
    };
    # nixos/modules/system/boot/stage-1.nix
    boot.initrd.postMountCommands = mkOption { type = types.lines; default = ""; };
    # nixos/modules/system/boot/kernel.nix
    boot.initrd.availableKernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
    boot.initrd.kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
    boot.kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
    boot.kernelParams = mkOption {
      type = types.listOf (types.strMatching ''([^"[:space:]]|"[^"]*")+'');
      default = [ ];
    };
    # nixos/modules/system/boot/loader/grub/grub.nix (default:
    # !config.boot.isContainer, true outside containers)
    boot.loader.grub.enable = mkOption { type = types.bool; default = true; };

    # nixos/modules/tasks/filesystems.nix (device, fsType, options, noCheck)
    # and stage-1.nix (neededForBoot)
    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (types.submodule ({ name, ... }: {
        options = {
          mountPoint = mkOption { type = types.str; default = name; };
          device = mkOption { type = types.nullOr types.nonEmptyStr; default = null; };
          fsType = mkOption { type = types.nonEmptyStr; default = "auto"; };
          options = mkOption { type = types.listOf types.nonEmptyStr; default = [ "defaults" ]; };
          neededForBoot = mkOption { type = types.bool; default = false; };
          noCheck = mkOption { type = types.bool; default = false; };
        };
      }));
    };

    # nixos/modules/services/networking/firewall.nix (listOf port)
    networking.firewall.allowedUDPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    # nixos/modules/tasks/network-interfaces.nix
    networking.useDHCP = mkOption { type = types.bool; default = true; };
    networking.hostName = mkOption { type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$"; default = "nixos"; };
    # nixos/modules/services/networking/wg-quick.nix (attrsOf submodule
    # interfaceOpts; configFile: nullOr str)
    networking.wg-quick.interfaces = mkOption {
      type = types.attrsOf (types.submodule {
        options.configFile = mkOption { type = types.nullOr types.str; default = null; };
      });
      default = { };
    };

    # nixos/modules/config/users-groups.nix (userOpts: isSystemUser, group,
    # extraGroups, description; the assertion that a system user has a group)
    users.users = mkOption {
      type = types.attrsOf (types.submodule {
        options.isSystemUser = mkOption { type = types.bool; default = false; };
        options.group = mkOption { type = types.str; default = ""; };
        options.extraGroups = mkOption { type = types.listOf types.str; default = [ ]; };
        options.description = mkOption { type = types.str; default = ""; };
      });
      default = { };
    };
    # nixos/modules/config/users-groups.nix (groupOpts: gid, members)
    users.groups = mkOption {
      type = types.attrsOf (types.submodule {
        options.gid = mkOption { type = types.nullOr types.int; default = null; };
        options.members = mkOption { type = types.listOf types.str; default = [ ]; };
      });
      default = { };
    };

    # nixos/modules/services/system/nix-daemon.nix
    nix.enable = mkOption { type = types.bool; default = true; };
    # nixos/modules/virtualisation/qemu-guest-agent.nix
    services.qemuGuest.enable = mkOption { type = types.bool; default = false; };
    # nixos/modules/services/ttys/getty.nix
    services.getty.autologinUser = mkOption { type = types.nullOr types.str; default = null; };
    # nixos/modules/services/hardware/udev.nix
    services.udev.extraRules = mkOption { type = types.lines; default = ""; };
    # nixos/modules/services/networking/ssh/sshd.nix
    services.openssh.hostKeys = mkOption {
      type = types.listOf types.attrs;
      default = [
        { type = "rsa"; bits = 4096; path = "/etc/ssh/ssh_host_rsa_key"; }
        { type = "ed25519"; path = "/etc/ssh/ssh_host_ed25519_key"; }
      ];
    };

    # nixos/modules/misc/version.nix (default: the release, here a stand-in)
    system.stateVersion = mkOption { type = types.str; default = "26.05"; };

    # nixos/modules/system/build.nix (freeform lazyAttrsOf)
    system.build = mkOption {
      type = types.submoduleWith { modules = [{ freeformType = types.lazyAttrsOf (types.uniq types.unspecified); }]; };
      default = { };
    };
  };
}
