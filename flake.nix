# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vmd for Nix users:
#   packages.<system>.default   vmd itself (nix/package.nix)
#   packages.x86_64-linux.image-guest
#                               the closure that boots container images
#                               (nix/image-guest-pkgs.nix): the host setting
#                               image_system, which services.vmd sets itself
#                               when a VM has an image
#   overlays.default            pkgs.vmd, pkgs.vmd-image-guest
#   nixosModules.host           services.vmd: VMs declared in configuration.nix
#   nixosModules.guest          what makes a NixOS system bootable by vmd
#   lib                         nix/lib.nix: definitions from attribute sets
#   checks.<system>             the package, and an example host whose
#                               definitions (one inline NixOS guest and, on
#                               x86_64, one dockerTools image) vmd checks at
#                               build time, and that guest's runner
{
  description = "vmd: declarative microVMs for Nix-built system closures";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      exampleHost = system: nixpkgs.lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.host
          ({ pkgs, ... }: {
            boot.loader.grub.enable = false;
            fileSystems."/" = { device = "none"; fsType = "tmpfs"; };
            system.stateVersion = "25.05";
            services.vmd = {
              enable = true;
              settings.networks.vmbr0 = { type = "bridge"; address = "10.0.0.1/24"; };
              vms = {
                example = {
                  config = { system.stateVersion = "25.05"; vmd.guest.sshHostKeys.enable = true; };
                  network = { bridge = "vmbr0"; address = "10.0.0.2/24"; };
                  disks.var = { sizeMiB = 1024; mount = "/var"; };
                };
              } // nixpkgs.lib.optionalAttrs (system == "x86_64-linux") {
                # A container image: the check builds the image guest from
                # nixpkgs (settings.imageSystem's default) and the image.
                web = {
                  image = pkgs.dockerTools.buildLayeredImage {
                    name = "web";
                    contents = [ pkgs.busybox ];
                    config.Cmd = [ "httpd" "-f" "-p" "80" ];
                  };
                  memoryMiB = 256;
                  network = { bridge = "vmbr0"; address = "10.0.0.3/24"; };
                  disks.var = { sizeMiB = 1024; mount = "/var"; persistent = true; };
                };
              };
            };
          })
        ];
      };
    in
    {
      overlays.default = final: prev: {
        vmd = final.callPackage ./nix/package.nix { };
        vmd-image-guest = import ./nix/image-guest-pkgs.nix { pkgs = final; inherit (final) vmd; };
      };

      packages = forAll (system: pkgs: rec {
        vmd = pkgs.callPackage ./nix/package.nix { };
        default = vmd;
      } // nixpkgs.lib.optionalAttrs (system == "x86_64-linux") {
        # x86_64 only: the image init and vmd-net.sh start qemu-ga, ip and
        # wg through ld-linux-x86-64.so.2.
        image-guest = import ./nix/image-guest-pkgs.nix { inherit pkgs; vmd = self.packages.${system}.vmd; };
      });

      # Both find vmd as pkgs.vmd when the overlay is applied, and build
      # it from nix/package.nix otherwise.
      nixosModules = {
        host = ./nix/host.nix;
        guest = ./nix/guest.nix;
        default = ./nix/host.nix;
      };

      lib = import ./nix/lib.nix;

      checks = forAll (system: pkgs:
        let host = exampleHost system; in {
          package = self.packages.${system}.vmd;
          # Builds the inline guest and runs `vmd check` on its definition.
          definitions = host.config.system.build.vmdDefinitions;
          runner = host.config.services.vmd.vms.example.nixos.config.system.build.vmdRunner;
        });
    };
}
