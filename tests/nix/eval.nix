# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Evaluates nix/host.nix and nix/guest.nix with nixpkgs' real lib against
# the stand-ins of tests/nix/stubs.nix; tests/integration/test_nix.py
# compares what comes out with golden files and builds the derivations.
#   lib         nixpkgs' lib (the directory)
#   vmdPackage  a directory with bin/vmd
#   closure     a system closure, standing in for every NixOS toplevel
#   host        the host configuration to evaluate (a module)
{ lib ? <nixpkgs/lib>, vmdPackage, closure, host ? { }, guest ? { } }:
let
  lib' = import lib;
  # The image guest's nixpkgs attributes too (settings.imageSystem's
  # default builds it); the rest is fake-pkgs.nix's.
  pkgs = import ./image-pkgs.nix { lib = lib'; } // import ./fake-pkgs.nix { inherit vmdPackage; };
  nixos = modules: lib'.evalModules {
    modules = [
      ./stubs.nix
      { _module.args.pkgs = pkgs; systemd.package = pkgs.systemd; }
    ] ++ modules;
  };
  # What services.vmd.vms.<name>.config becomes: NixOS (here the stand-ins)
  # with nix/guest.nix, and the tiny guest playing the toplevel.
  evalGuest = { name, modules }: nixos (modules ++ [{ system.build.toplevel = closure; }]);

  hostEval = nixos [ ../../nix/host.nix { services.vmd.evalGuest = evalGuest; } host ];
  guestEval = evalGuest { name = "guest"; modules = [ ../../nix/guest.nix guest ]; };

  failed = cfg: map (a: a.message) (lib'.filter (a: !a.assertion) cfg.assertions);
  units = services: names: lib'.mapAttrs (_: u: {
    inherit (u) description wantedBy requiredBy after before wants requires serviceConfig unitConfig script;
    path = map toString u.path;
  } // lib'.optionalAttrs (u ? restartIfChanged) {
    inherit (u) restartIfChanged reloadIfChanged stopIfChanged;
    restartTriggers = map toString u.restartTriggers;
    reloadTriggers = map toString u.reloadTriggers;
  }) (lib'.getAttrs names services);
  readEtc = f: builtins.readFile f.source;
in
{
  inherit hostEval guestEval;

  host = let c = hostEval.config; in {
    assertions = failed c;
    settings = builtins.fromJSON (readEtc c.environment.etc."vmd/vmd.json");
    etc = lib'.attrNames c.environment.etc;
    units = units c.systemd.services [ "vmd" "vmd-guests" ];
    firewallUDP = c.networking.firewall.allowedUDPPorts;
    groups = lib'.attrNames c.users.groups;
    users = lib'.mapAttrs (_: u: { inherit (u) isSystemUser group extraGroups; }) c.users.users;
    definitions = c.system.build.vmdDefinitions.drvPath;
  };

  guest = let c = guestEval.config; in {
    assertions = failed c;
    kernelParams = c.boot.kernelParams;
    initrdModules = c.boot.initrd.kernelModules;
    postMountCommands = c.boot.initrd.postMountCommands;
    initrdUnits = units c.boot.initrd.systemd.services (lib'.attrNames c.boot.initrd.systemd.services);
    initrdStorePaths = map toString c.boot.initrd.systemd.storePaths;
    fileSystems = lib'.mapAttrs (_: f: { inherit (f) device fsType options neededForBoot noCheck; }) c.fileSystems;
    units = units c.systemd.services [ "vmd-notify" "vmd-network" "vmd-emergency-poweroff" "serial-getty@ttyS0" ];
    autologin = c.services.getty.autologinUser;
    udevRules = c.services.udev.extraRules;
    nix = c.nix.enable;
    sshHostKeys = c.services.openssh.hostKeys;
    definition = builtins.fromJSON (builtins.readFile c.system.build.vmdDefinition);
    runner = c.system.build.vmdRunner.text;
  };
}
