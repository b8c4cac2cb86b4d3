# SPDX-License-Identifier: LGPL-2.1-or-later
#
# NixOS host module: VMs declared in configuration.nix, kept up by the vmd
# daemon. With the flake: `imports = [ vmd.nixosModules.host ];`, else
# `imports = [ ./vmd/nix/host.nix ];`.
#
#   services.vmd = {
#     enable = true;
#     settings.networks.vmbr0 = { type = "bridge"; address = "10.0.0.1/24"; };
#     vms.edge = {
#       config = { pkgs, ... }: {              # the guest, as a NixOS module
#         services.nginx.enable = true;
#         vmd.guest.sshHostKeys.enable = true;  # host keys kept in a key directory
#       };
#       memoryMiB = 1024;
#       network = { bridge = "vmbr0"; address = "10.0.0.2/24"; };
#       disks.var = { sizeMiB = 2048; mount = "/var"; };
#     };
#     vms.web = {                               # a container image as a VM
#       image = pkgs.dockerTools.buildLayeredImage { ... };
#       memoryMiB = 256;
#       disks.var = { sizeMiB = 1024; mount = "/var"; persistent = true; };
#     };
#   };
#
# A VM with an `image` boots settings.imageSystem, which defaults to
# services.vmd.imageGuest (nix/image-guest-pkgs.nix: kernel, initrd and
# image init from nixpkgs) once any VM has one.
#
# Every option below `settings` and `vms.<name>` is generated from
# nix/schema.json (`vmd schema`): the same names, types, limits and
# descriptions vmd validates with, in Nix spelling. `null` leaves a field
# out, so vmd's own default applies.
#
# Units (the libvirtd / libvirt-guests split):
# - vmd.service runs the daemon. A new package or new settings restart it,
#   and that never reboots a VM: the unit's stop signal is SIGUSR2, on
#   which the daemon exits and leaves every VM running, and the next daemon
#   adopts them. New definitions are applied by `vmd reload`, which waits
#   for the daemon's answer, so `nixos-rebuild switch` fails when vmd
#   rejects them; only the VMs whose definitions changed restart.
# - vmd-guests.service powers the VMs off when the host goes down: it is
#   ordered after vmd.service, so it stops first, and its ExecStop runs
#   `vmd shutdown` (ACPI powerdown of every VM, in parallel, then the daemon
#   exits). A switch never restarts it (restartIfChanged = false).
#   `systemctl restart vmd-guests` reboots every VM; `systemctl stop vmd`
#   leaves them running, as with libvirtd.
# - The definitions are checked with `vmd check` when the system is built:
#   an invalid VM fails `nixos-rebuild`, not the daemon.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkIf types literalExpression;
  cfg = config.services.vmd;
  vmdLib = import ./lib.nix;
  opts = vmdLib.options lib;
  vmd = "${cfg.package}/bin/vmd";

  absolute = types.strMatching "/.*";

  # QEMU runs as this user, never root (vmd refuses to start QEMU if it is
  # missing); /dev/kvm reaches it through the kvm group.
  qemuUser = if cfg.settings.qemuUser != null then cfg.settings.qemuUser else "vmd-qemu";

  anyImage = lib.any (vm: vm.image != null) (lib.attrValues cfg.vms);

  inherit (vmdLib) dropNulls;
  definitionFields = vm: removeAttrs vm [ "config" "nixos" "_module" ];

  # Guest-side wishes (nix/guest.nix's vmd.guest.definition, e.g. the key
  # directory of sshHostKeys), then the host's own fields over them.
  definitionOf = name: vm:
    let
      guest = if vm.nixos == null then { } else
        dropNulls (removeAttrs vm.nixos.config.vmd.guest.definition [ "name" "system" "_module" ]);
      system =
        if vm.system != null then vm.system
        else if vm.nixos != null then vm.nixos.config.system.build.toplevel
        else if vm.image != null then null
        else throw "services.vmd.vms.${name}: set `system` (a closure), `config` (a NixOS guest) or `image` (a container image)";
    in
    vmdLib.toDefinition name (lib.recursiveUpdate guest (dropNulls (definitionFields vm))
      // lib.optionalAttrs (system != null) { inherit system; });

  definitions = lib.mapAttrs definitionOf cfg.vms;
  settingsJSON = vmdLib.toSettings (dropNulls cfg.settings);
  settingsFile = pkgs.writeText "vmd.json" (builtins.toJSON settingsJSON);
  definitionFiles = lib.mapAttrs (name: d: pkgs.writeText "vmd-${name}.json" (builtins.toJSON d)) definitions;

  # All definitions in one directory, checked by vmd itself against the
  # settings and the closures (which are inputs of this build).
  checkedDefinitions = pkgs.runCommand "vmd-definitions" { } ''
    mkdir -p $out
    ${lib.concatStrings (lib.mapAttrsToList (name: f: ''
      cp ${f} $out/${name}.json
    '') definitionFiles)}
    ${vmd} check -c ${settingsFile} $out
  '';

  stopTimeout = (if cfg.settings.stopTimeoutS != null then cfg.settings.stopTimeoutS else 30)
    # then SIGTERM, SIGKILL 5 s later, and the daemon's own exit
    + 5 + 25;

  vmModule = { name, config, ... }: {
    options = opts.definitionOptions {
      name = mkOption {
        type = types.str;
        default = name;
        readOnly = true;
        description = "The VM's name: the attribute name (1..32 of [a-z0-9-]).";
      };
      system = mkOption {
        type = types.nullOr (types.either types.package absolute);
        default = null;
        description = ''
          The system closure to boot (kernel, initrd, init): a NixOS toplevel
          or a store path. Default: the toplevel of `config`.
        '';
      };
    } // {
      config = mkOption {
        type = types.nullOr types.deferredModule;
        default = null;
        description = ''
          The guest, written inline as a NixOS module. It is evaluated with
          nix/guest.nix imported and `networking.hostName` defaulting to the
          VM's name, and its toplevel becomes `system`.
        '';
      };
      nixos = mkOption {
        type = types.unspecified;
        readOnly = true;
        internal = true;
        description = "The evaluated inline guest, or null.";
      };
    };
    config.nixos = if config.config == null then null else cfg.evalGuest {
      inherit name;
      modules = [
        ./guest.nix
        { networking.hostName = lib.mkDefault name; }
        config.config
      ];
    };
  };
in
{
  options.services.vmd = {
    enable = lib.mkEnableOption "vmd, the declarative microVM manager";

    package = mkOption {
      type = types.package;
      default = pkgs.vmd or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.vmd or (pkgs.callPackage ./package.nix { })";
      description = "The vmd package.";
    };

    settings = mkOption {
      type = types.submodule {
        options = opts.settingsOptions {
          qemu = mkOption {
            type = types.str;
            default = "${pkgs.qemu_kvm}/bin/qemu-system-x86_64";
            defaultText = literalExpression ''"''${pkgs.qemu_kvm}/bin/qemu-system-x86_64"'';
            description = "QEMU. JSON field: `qemu`.";
          };
          virtiofsd = mkOption {
            type = types.str;
            default = "${pkgs.virtiofsd}/bin/virtiofsd";
            defaultText = literalExpression ''"''${pkgs.virtiofsd}/bin/virtiofsd"'';
            description = "virtiofsd (nixpkgs' QEMU ships none; this is the Rust one). JSON field: `virtiofsd`.";
          };
          image_system = mkOption {
            type = types.nullOr (types.either types.package absolute);
            default = if anyImage then cfg.imageGuest else null;
            defaultText = literalExpression "config.services.vmd.imageGuest if a VM has an image, else null";
            description = ''
              The closure that boots container images (definitions with
              `image`): kernel, initrd with vmd's image init, guest agent.
              Default: `services.vmd.imageGuest` when a VM names an image,
              else left out. JSON field: `image_system`.
            '';
          };
          wireguard_go = mkOption {
            type = types.str;
            default = "${pkgs.wireguard-go}/bin/wireguard-go";
            defaultText = literalExpression ''"''${pkgs.wireguard-go}/bin/wireguard-go"'';
            description = "wireguard-go, for hubs where the kernel has no WireGuard module. JSON field: `wireguard_go`.";
          };
        };
      };
      default = { };
      description = "Host settings, written to /etc/vmd/vmd.json. Fields left null take vmd's defaults.";
    };

    imageGuest = mkOption {
      type = types.package;
      default = pkgs.vmd-image-guest or (import ./image-guest-pkgs.nix { inherit pkgs; vmd = cfg.package; });
      defaultText = literalExpression "pkgs.vmd-image-guest or (import ./image-guest-pkgs.nix { inherit pkgs; vmd = config.services.vmd.package; })";
      description = ''
        The image guest built from nixpkgs (nix/image-guest-pkgs.nix): the
        kernel, an initrd whose /init is vmd's image init (compiled from the
        vmd package's source), qemu-ga, ip and wg. `settings.imageSystem`
        defaults to it when a VM has an `image`.
      '';
    };

    vms = mkOption {
      type = types.attrsOf (types.submodule vmModule);
      default = { };
      description = "VM definitions by name, written to /etc/vmd/vms.d/NAME.json.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Open the UDP ports of the WireGuard hubs in settings.networks.";
    };

    evalGuest = mkOption {
      type = types.functionTo types.unspecified;
      internal = true;
      default = { name, modules }: import "${pkgs.path}/nixos/lib/eval-config.nix" {
        system = pkgs.stdenv.hostPlatform.system;
        inherit pkgs modules;
        prefix = [ "services" "vmd" "vms" name "config" ];
      };
      description = "How an inline guest is evaluated (NixOS's eval-config.nix; tests replace it).";
    };
  };

  config = mkIf cfg.enable {
    environment.etc."vmd/vmd.json".source = settingsFile;
    environment.etc."vmd/vms.d".source = checkedDefinitions;

    users.groups.vmd = { };
    users.users.${qemuUser} = {
      isSystemUser = true;
      group = lib.mkDefault qemuUser;
      extraGroups = [ "kvm" ];
      description = lib.mkDefault "vmd's QEMU processes";
    };
    users.groups.${qemuUser} = { };

    networking.firewall.allowedUDPPorts = mkIf cfg.openFirewall (vmdLib.hubPorts settingsJSON);

    system.build.vmdDefinitions = checkedDefinitions;

    systemd.services.vmd = {
      description = "vmd: declarative microVMs";
      after = [ "local-fs.target" "network.target" ];
      wantedBy = [ "multi-user.target" ];
      # mkfs.ext4 for disks, qemu-img for overlays.
      path = [ pkgs.e2fsprogs pkgs.qemu_kvm ];
      restartTriggers = [ cfg.package settingsFile ];
      reloadTriggers = [ checkedDefinitions ];
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${vmd} daemon";
        # Synchronous, and fails when vmd rejects the definitions.
        ExecReload = "${vmd} reload";
        # Stopping the unit (a restart for a new package or new settings)
        # leaves the VMs running for the next daemon, which adopts them.
        KillMode = "process";
        KillSignal = "SIGUSR2";
        SuccessExitStatus = 75;
        Restart = "on-failure";
        RestartSec = "1s";
        RestartForceExitStatus = 75;
      };
    };

    systemd.services.vmd-guests = {
      description = "vmd: power the VMs off when the host stops";
      wantedBy = [ "multi-user.target" ];
      wants = [ "vmd.service" ];
      after = [ "vmd.service" ];
      restartIfChanged = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${pkgs.coreutils}/bin/true";
        ExecStop = "${vmd} shutdown";
        TimeoutStopSec = stopTimeout;
      };
    };
  };
}
