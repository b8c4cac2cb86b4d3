# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Pure helpers that turn Nix attribute sets into vmd definitions. They need
# nothing but builtins, so they evaluate without nixpkgs:
#
#   nix-instantiate --eval --strict --json -E \
#     '(import ./nix/lib.nix).toDefinitions { edge = { system = "/nix/store/...-toplevel"; }; }'
#
# nix/host.nix uses them to write /etc/vmd/vms.d/<name>.json; the test suite
# evaluates them and runs the result through `vmd check`.
#
# Attribute names follow Nix style (memoryMiB, readOnly, sizeMiB, ...); keys
# and shares may be given as attribute sets keyed by name/tag (the order of
# the resulting list is then alphabetical) or as lists. Unset options are
# left out, so vmd's documented defaults apply. Anything vmd does not know
# is passed through unchanged, so `vmd check` reports it by its JSON name.
let
  inherit (builtins) attrNames filter isAttrs isList listToAttrs map removeAttrs toString;

  # Nix name -> JSON name, for the options whose names differ.
  renames = {
    memoryMiB = "memory_mib";
    kernelParams = "kernel_params";
    readOnly = "read_only";
    sizeMiB = "size_mib";
    baseFormat = "base_format";
  };

  rename = attrs: listToAttrs (map (n: {
    name = renames.${n} or n;
    value = attrs.${n};
  }) (filter (n: attrs.${n} != null) (attrNames attrs)));

  # { ssh = { target = ...; }; } -> [ { name = "ssh"; target = ...; } ]
  asList = keyAttr: v:
    if isList v then v
    else if isAttrs v then map (n: { ${keyAttr} = n; } // v.${n}) (attrNames v)
    else throw "vmd: expected a list or an attribute set, got ${builtins.typeOf v}";

  # A derivation (a NixOS toplevel) or a store path string.
  systemPath = s: if isAttrs s then toString (s.outPath or (throw "vmd: system is an attribute set without outPath")) else s;

  toDefinition = name: cfg:
    let
      plain = removeAttrs cfg [ "system" "keys" "shares" "disks" "name" ];
      lists = listToAttrs (filter (x: x != null) [
        (if cfg ? keys then { name = "keys"; value = map rename (asList "name" cfg.keys); } else null)
        (if cfg ? shares then { name = "shares"; value = map rename (asList "tag" cfg.shares); } else null)
        (if cfg ? disks then { name = "disks"; value = map rename (asList "name" cfg.disks); } else null)
      ]);
    in
    if cfg ? name && cfg.name != name then throw "vmd: VM ${name} has name = ${cfg.name}"
    else { inherit name; system = systemPath (cfg.system or (throw "vmd: VM ${name} has no system")); }
      // rename plain // lists;
in
{
  inherit toDefinition;

  # { name = cfg; ... } -> { name = definition; ... }
  toDefinitions = vms: builtins.mapAttrs toDefinition vms;

  # { name = cfg; ... } -> { "vmd/vms.d/name.json" = JSON text; ... }
  toEtcFiles = vms: listToAttrs (map (n: {
    name = "vmd/vms.d/${n}.json";
    value = builtins.toJSON (toDefinition n vms.${n});
  }) (attrNames vms));
}
