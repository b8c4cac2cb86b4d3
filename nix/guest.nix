# SPDX-License-Identifier: LGPL-2.1-or-later
#
# NixOS guest module: makes a NixOS system bootable by vmd, per the guest
# contract (README.md, "The guest side"). Import it into the guest's
# configuration (services.vmd.vms.<name>.config does that itself) and give
# vmd config.system.build.toplevel as `system`.
#
# - The root is a tmpfs; stage 1 mounts the host's store (virtiofs tag
#   nix-store) read-only. Nothing survives a reboot but what vmd hands the
#   guest: key directories and persistent volumes.
# - Stage 1 also mounts every key directory, share and disk that vmd lists
#   as systemd.mount-extra= on the kernel command line, with the same
#   script the test suite's tiny guest runs (images/guest/vmd-mounts.sh):
#   in boot.initrd.postMountCommands with the scripted initrd, in the
#   initrd unit vmd-mounts.service with the systemd initrd. Both run before
#   NixOS activation, so a key directory at /etc/ssh or a disk at /var is in
#   place when activation writes /etc and /var/lib/nixos.
# - A failure in stage 1, or emergency mode later, powers the VM off (vmd
#   sees the VM end) instead of waiting at a console nobody reads.
# - vmd-notify.service writes READY=1 to the io.vmd.notify port once the
#   port's device, the network, wg0 (when there is a wg0.conf) and the
#   guest agent are up.
# - The QEMU guest agent runs (vmd exec, vmd run DEF -- CMD).
# - The NIC gets the address vmd passes as ip=ADDR::GW:NETMASK::DEV:off;
#   wg0 comes up from the wg0.conf vmd writes into the key directory at
#   /etc/wireguard.
# - system.build.vmdDefinition and system.build.vmdRunner: this system as a
#   vmd definition, and a `vmd run` of it (microvm.nix's declaredRunner):
#   `nix run .#nixosConfigurations.NAME.config.system.build.vmdRunner -- uname -a`.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkIf mkDefault types;
  cfg = config.vmd.guest;
  vmdLib = import ./lib.nix;
  opts = vmdLib.options lib;
  # In the store, under a name of its own: both initrds take it from there.
  mountScript = builtins.path { path = ../images/guest/vmd-mounts.sh; name = "vmd-mounts.sh"; };
  systemdInitrd = config.boot.initrd.systemd.enable;

  inherit (vmdLib) dropNulls;
  definition = vmdLib.toDefinition cfg.definition.name
    (dropNulls (removeAttrs cfg.definition [ "_module" ]));
  definitionFile = pkgs.writeText "vmd-${cfg.definition.name}.json" (builtins.toJSON definition);

  # Powers off without waiting for units, which may be what failed; the
  # processes are stopped and the filesystems unmounted first (--force
  # once), so a persistent volume is left clean.
  poweroffUnit = systemctl: {
    description = "vmd: power off instead of waiting in emergency mode";
    unitConfig.DefaultDependencies = false;
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${systemctl} poweroff --force";
    };
  };
in
{
  options.vmd.guest = {
    sshHostKeys = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Keep sshd's host key in a vmd key directory mounted at `target`,
          so it survives the stateless root, without hiding /etc/ssh (where
          NixOS puts sshd_config). Adds the key directory to this system's
          definition (and so to services.vmd.vms.<name> for inline guests),
          read-write, so sshd makes the key on first boot.
        '';
      };
      keyName = mkOption {
        type = types.strMatching "[a-z0-9][a-z0-9-]{0,31}";
        default = "ssh";
        description = "The key directory's name (its host source is <keys_dir>/<vm>/<keyName>).";
      };
      target = mkOption {
        type = types.strMatching "/.*";
        default = "/var/lib/vmd-keys/ssh";
        description = "Where the key directory is mounted in the guest.";
      };
    };

    console.autologinUser = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "root";
      description = ''
        Log this user in on the serial console without a password
        (services.getty.autologinUser). By default the serial console,
        which `vmd console NAME` reaches, shows a login prompt. Only the
        host's root and the members of vmd's control group can reach it,
        but with autologin they are that user in the guest without a
        password: ask for it only where that is what you want.
      '';
    };

    definition = mkOption {
      type = types.submodule {
        options = opts.definitionOptions {
          name = mkOption {
            type = types.strMatching "[a-z0-9][a-z0-9-]{0,31}";
            default = config.networking.hostName;
            defaultText = lib.literalExpression "config.networking.hostName";
            description = "The VM's name.";
          };
          system = mkOption {
            type = types.either types.package (types.strMatching "/.*");
            default = config.system.build.toplevel;
            defaultText = lib.literalExpression "config.system.build.toplevel";
            description = "The closure to boot: this system.";
          };
        };
      };
      default = { };
      description = ''
        This system as a vmd definition (the same fields as
        services.vmd.vms.<name>), for system.build.vmdDefinition and
        system.build.vmdRunner. For an inline guest of services.vmd.vms,
        the host's fields are merged over these.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.vmd or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.vmd or (pkgs.callPackage ./package.nix { })";
      description = "The vmd that system.build.vmdRunner runs (on the host).";
    };
  };

  config = {
    assertions = [
      {
        assertion = !config.nix.enable;
        message = ''
          vmd guests share the host's /nix/store read-only, without a Nix
          database for it: nix.enable = true would start a nix-daemon that
          sees an empty store it cannot write. Leave nix.enable = false (the
          default of nix/guest.nix); build on the host.
        '';
      }
      {
        assertion = !(config.fileSystems ? "/nix") || config.fileSystems."/nix".fsType == "tmpfs";
        message = "vmd guests get /nix/store from the host (virtiofs); a filesystem at /nix would hide it.";
      }
    ];

    boot.loader.grub.enable = false;
    boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_blk" "virtio_console" "virtiofs" "ext4" ];
    # Loaded up front: the stage-1 mounts need virtiofs for key directories
    # and shares, and ext4 for disks.
    boot.initrd.kernelModules = [ "virtio_pci" "virtio_blk" "virtio_console" "virtiofs" "ext4" ];
    # boot.panic_on_fail: a stage-1 failure panics (scripted initrd: fail()
    # exits; systemd initrd: NixOS's panic-on-fail.service) instead of
    # waiting for a key press; vmd's panic=-1 and QEMU's -no-reboot then end
    # the VM, and vmd reports it.
    boot.kernelParams = [ "console=ttyS0" "boot.panic_on_fail" ];
    # A login prompt on the serial console, for `vmd console NAME`.
    # systemd's getty generator starts it for the kernel console anyway;
    # said here so that it does not hang on that.
    systemd.services."serial-getty@ttyS0" = {
      enable = true;
      wantedBy = [ "getty.target" ];
    };
    services.getty.autologinUser = mkIf (config.vmd.guest.console.autologinUser != null)
      config.vmd.guest.console.autologinUser;

    fileSystems."/" = {
      device = "none";
      fsType = "tmpfs";
      options = [ "mode=0755" "size=50%" ];
    };
    fileSystems."/nix/store" = {
      device = "nix-store";
      fsType = "virtiofs";
      # virtiofs must be loaded before the mount (systemd initrd); the
      # scripted initrd drops x- options and loads kernelModules first.
      options = [ "ro" "x-systemd.after=systemd-modules-load.service" ];
      neededForBoot = true;
      noCheck = true;
    };

    # Stage 1, scripted initrd: after NixOS mounted the root and the store
    # at /mnt-root, before switch_root and so before activation.
    boot.initrd.postMountCommands = mkIf (!systemdInitrd) ''
      sh ${mountScript} /mnt-root || fail
    '';

    # Stage 1, systemd initrd: after every /sysroot mount (initrd-fs.target),
    # before NixOS activation.
    boot.initrd.systemd.storePaths = mkIf systemdInitrd [ mountScript ];
    boot.initrd.systemd.services.vmd-mounts = mkIf systemdInitrd {
      description = "vmd: key directories, shares and disks";
      requiredBy = [ "initrd.target" ];
      after = [ "initrd-fs.target" ];
      before = [ "initrd.target" "initrd-nixos-activation.service" "initrd-find-nixos-closure.service" ];
      unitConfig.DefaultDependencies = false;
      unitConfig.FailureAction = "poweroff-force";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "/bin/sh ${mountScript} /sysroot";
      };
    };
    # Emergency mode in the initrd (the root or the store failed to mount)
    # and in the system: power off.
    boot.initrd.systemd.services.vmd-emergency-poweroff = mkIf systemdInitrd (poweroffUnit "/bin/systemctl" // {
      wantedBy = [ "emergency.target" ];
    });
    systemd.services.vmd-emergency-poweroff = poweroffUnit "${config.systemd.package}/bin/systemctl" // {
      wantedBy = [ "emergency.target" "rescue.target" ];
    };

    # Nothing to activate on a read-only store shared with the host.
    nix.enable = mkDefault false;

    services.qemuGuest.enable = true;
    # systemd knows the notify port as a device (qemu-guest-agent's port
    # gets the same from NixOS's own rule).
    services.udev.extraRules = ''
      SUBSYSTEM=="virtio-ports", ATTR{name}=="io.vmd.notify", TAG+="systemd"
    '';

    services.openssh.hostKeys = mkIf cfg.sshHostKeys.enable [
      { type = "ed25519"; path = "${cfg.sshHostKeys.target}/ssh_host_ed25519_key"; }
    ];
    vmd.guest.definition.keys = mkIf cfg.sshHostKeys.enable {
      ${cfg.sshHostKeys.keyName} = { target = cfg.sshHostKeys.target; readOnly = false; };
    };

    # The address on the bridge, from vmd's ip= parameter, on the first
    # Ethernet NIC (the tap is the only one).
    networking.useDHCP = mkDefault false;
    systemd.services.vmd-network = {
      description = "Address from vmd's ip= kernel parameter";
      wantedBy = [ "network.target" ];
      before = [ "network.target" ];
      wants = [ "network-pre.target" ];
      after = [ "network-pre.target" "systemd-udevd.service" ];
      unitConfig.ConditionKernelCommandLine = "ip";
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
      path = [ pkgs.iproute2 pkgs.gawk pkgs.coreutils pkgs.gnused ];
      script = ''
        conf=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^ip=//p' | tail -n 1)
        IFS=: read -r addr _ gw mask _ dev _ <<< "$conf"
        # The NIC may appear after this unit starts: wait for it (30 s).
        for _ in $(seq 300); do
          if [ -z "$dev" ]; then
            for d in /sys/class/net/*; do
              [ -e "$d/device" ] && { dev=''${d##*/}; break; }
            done
          fi
          [ -n "$dev" ] && [ -e "/sys/class/net/$dev" ] && break
          sleep 0.1
        done
        [ -n "$dev" ] && [ -e "/sys/class/net/$dev" ] || { echo "vmd-network: no NIC" >&2; exit 1; }
        prefix=$(awk -v m="$mask" 'BEGIN { n = split(m, o, "."); p = 0
          for (i = 1; i <= n; i++) { v = o[i]; while (v > 0) { p += v % 2; v = int(v / 2) } } print p }')
        ip link set "$dev" up
        ip addr replace "$addr/$prefix" dev "$dev"
        if [ -n "$gw" ]; then ip route replace default via "$gw"; fi
      '';
    };

    # WireGuard: vmd writes /etc/wireguard/wg0.conf (the VM's key and
    # address, the host hub as peer) into the key directory it mounts there.
    boot.kernelModules = [ "wireguard" ];
    networking.wg-quick.interfaces.wg0.configFile = "/etc/wireguard/wg0.conf";
    systemd.services.wg-quick-wg0.unitConfig = {
      ConditionPathExists = "/etc/wireguard/wg0.conf";
      RequiresMountsFor = "/etc/wireguard";
    };

    systemd.services.vmd-notify = {
      description = "Tell vmd the guest is ready";
      wantedBy = [ "multi-user.target" ];
      # The port is a device unit (udev rule above): waiting for it replaces
      # a one-time ConditionPathExists that udev could lose a race against.
      requires = [ "dev-virtio\\x2dports-io.vmd.notify.device" "qemu-guest-agent.service" ];
      wants = [ "network.target" ];
      # Not after multi-user.target: that target waits for what it wants.
      after = [
        "dev-virtio\\x2dports-io.vmd.notify.device"
        "qemu-guest-agent.service"
        "local-fs.target"
        "network.target"
        "vmd-network.service"
        "wg-quick-wg0.service"
      ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
      script = "printf 'READY=1\\n' > /dev/virtio-ports/io.vmd.notify";
    };

    system.build.vmdDefinition = definitionFile;
    system.build.vmdRunner = pkgs.writeShellScriptBin "vmd-run-${cfg.definition.name}" ''
      # vmd-run-NAME [CMD ARG...]: a throwaway run of this system; with a
      # command, its output and exit status. $VMD_SETTINGS: another
      # settings file than /etc/vmd/vmd.json.
      if [ $# -gt 0 ]; then
        exec ${cfg.package}/bin/vmd ''${VMD_SETTINGS:+-c "$VMD_SETTINGS"} run ${definitionFile} -- "$@"
      fi
      exec ${cfg.package}/bin/vmd ''${VMD_SETTINGS:+-c "$VMD_SETTINGS"} run ${definitionFile}
    '';
  };
}
