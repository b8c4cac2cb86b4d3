# SPDX-License-Identifier: LGPL-2.1-or-later
#
# NixOS host module: declare VMs in Nix, run them with the vmd daemon.
#
#   imports = [ ./vmd/nix/host.nix ];
#   services.vmd = {
#     enable = true;
#     package = pkgs.callPackage ./vmd/nix/package.nix { };   # or your own build
#     settings = {                                           # /etc/vmd/vmd.json
#       accel = "kvm";
#       networks.vmbr0 = { type = "bridge"; address = "10.0.0.1/24"; };
#       networks.vmwg = { type = "wireguard"; address = "10.77.0.1/24"; endpoint = "10.0.0.1"; };
#     };
#     vms.edge = {
#       system = nixosConfigurations.edge.config.system.build.toplevel;
#       memoryMiB = 1024;
#       keys.ssh = { target = "/etc/ssh"; readOnly = false; };
#       network = { bridge = "vmbr0"; address = "10.0.0.2/24"; };
#       wireguard = { hub = "vmwg"; address = "10.77.0.2/32"; };  # key dir "wireguard" at /etc/wireguard
#       disks.scratch = { sizeMiB = 1024; mount = "/var"; };
#       disks.db = { sizeMiB = 4096; mount = "/var/lib/db"; persistent = true; };
#     };
#   };
#
# Each VM becomes /etc/vmd/vms.d/<name>.json (through nix/lib.nix, which the
# test suite evaluates and checks); a rebuild that changes any of them
# reloads the daemon, which restarts exactly the VMs that changed. The VM
# options are vmd's definition fields in Nix spelling (README.md,
# "Definition reference"); vmd itself validates them at reload.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.vmd;
  vmdLib = import ./lib.nix;
  etcFiles = vmdLib.toEtcFiles cfg.vms;
in
{
  options.services.vmd = {
    enable = lib.mkEnableOption "vmd, the declarative microVM manager";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The vmd package (its bin/vmd is started).";
    };

    settings = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      default = { };
      description = "Host settings, written to /etc/vmd/vmd.json.";
    };

    vms = lib.mkOption {
      type = lib.types.attrsOf (lib.types.attrsOf lib.types.anything);
      default = { };
      description = "VM definitions by name (Nix spelling of the JSON fields).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.etc = lib.mapAttrs (_: text: { inherit text; mode = "0644"; }) etcFiles
      // { "vmd/vmd.json".text = builtins.toJSON cfg.settings; };

    users.groups.vmd = { };

    # The same unit as vmd/vmd.service.in; see the comments there.
    systemd.services.vmd = {
      description = "vmd: declarative microVMs";
      after = [ "local-fs.target" "network.target" ];
      wantedBy = [ "multi-user.target" ];
      path = [ pkgs.e2fsprogs pkgs.qemu_kvm ];
      reloadTriggers = lib.attrValues etcFiles;
      restartTriggers = [ (builtins.toJSON cfg.settings) ];
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${cfg.package}/bin/vmd daemon";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        KillMode = "process";
        Restart = "on-failure";
        RestartSec = "1s";
        RestartForceExitStatus = 75;
        TimeoutStopSec = "90s";
      };
    };
  };
}
