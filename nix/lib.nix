# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vmd's definitions and settings on the Nix side, built from one source:
# nix/schema.json, which is what `vmd schema` prints (a test keeps the two
# equal). Field names, types, limits, defaults and descriptions all come
# from there, so the NixOS modules and vmd's own validator cannot drift
# apart.
#
# The conversion to JSON needs nothing but builtins, so it evaluates
# without nixpkgs:
#
#   nix-instantiate --eval --strict --json -E \
#     '(import ./nix/lib.nix).toDefinitions { edge = { system = "/nix/store/...-toplevel"; }; }'
#
# Nix spelling: each JSON field's "nix_name" (memory_mib -> memoryMiB,
# read_only -> readOnly, kernel_params -> kernelParams). Keys, shares and
# disks may be given as attribute sets keyed by their name (or tag) or as
# lists. null means "left out", so vmd's default applies. A name vmd does
# not know is passed through unchanged, so that `vmd check` reports it.
#
# The option declarations (mkDefinitionOptions, mkSettingsOptions) need
# nixpkgs' lib and are what nix/host.nix and nix/guest.nix use.
let
  inherit (builtins) attrNames concatMap elem filter fromJSON hasAttr head isAttrs isList
    isString listToAttrs map mapAttrs readFile toString typeOf;

  schema = fromJSON (readFile ./schema.json);

  # { nixName = field // { key = jsonName; }; }
  byNixName = fields: listToAttrs (map (k: {
    name = fields.${k}.nix_name;
    value = fields.${k} // { key = k; };
  }) (attrNames fields));

  # { ssh = { target = ...; }; } -> [ { name = "ssh"; target = ...; } ]
  asList = keyName: v:
    if isList v then v
    else if isAttrs v then map (n: { ${keyName} = n; } // v.${n}) (attrNames v)
    else throw "vmd: expected a list or an attribute set, got ${typeOf v}";

  # A derivation (a NixOS toplevel) or a path string.
  plainString = v:
    if isAttrs v then toString (v.outPath or (throw "vmd: an attribute set without outPath where a path belongs"))
    else if typeOf v == "path" then toString v
    else v;

  toJSONObject = fields: attrs:
    let known = byNixName fields; in
    listToAttrs (concatMap (n:
      let v = attrs.${n}; f = known.${n} or null; in
      if v == null then [ ]
      else if f == null then [{ name = n; value = v; }]
      else [{ name = f.key; value = convert f v; }]
    ) (attrNames attrs));

  convert = f: v:
    if f.type == "list" then
      map (toJSONObject f.fields) (asList f.fields.${f.item_key}.nix_name v)
    else if f.type == "object" then toJSONObject f.fields v
    else if f.type == "map" then mapAttrs (_: toJSONObject f.fields) v
    else if f.type == "string" then plainString v
    else v;

  # Option values without the nulls (fields left out), at every depth but
  # inside derivations.
  dropNulls = v:
    if isAttrs v && (v.type or null) != "derivation"
    then mapAttrs (_: dropNulls) (builtins.removeAttrs v (filter (n: v.${n} == null) (attrNames v)))
    else v;

  toDefinition = name: cfg:
    if cfg ? name && cfg.name != null && cfg.name != name then throw "vmd: VM ${name} has name = ${cfg.name}"
    else if (cfg.system or null) == null && (cfg.image or null) == null then throw "vmd: VM ${name} has no system (or image)"
    else toJSONObject schema.definition (cfg // { inherit name; });

  # --- option declarations (need nixpkgs' lib) -------------------------------

  showDefault = f:
    if f.type == "bool" then (if f.default then "true" else "false")
    else if f.type == "integer" then toString f.default
    else builtins.toJSON f.default;

  describe = f:
    f.doc or ""
    + (if f.type == "integer" then " (${toString f.min}..${toString f.max})" else "")
    + (if f ? format then " Format: ${f.format}." else "")
    + (if f ? default then " vmd's default: ${showDefault f}." else "")
    + " JSON field: `${f.key}`.";

  mkOptionsWith = lib:
    let
      inherit (lib) mkOption types;

      absolute = types.strMatching "/.*";

      fieldType = f:
        if f.type == "string" then
          (if elem f.key [ "system" "image" "image_system" ] then types.either types.package absolute
           else if f ? pattern then types.strMatching f.pattern
           else if elem (f.format or "") [ "path" "guest-path" "dir" ] then absolute
           else types.str)
        else if f.type == "bool" then types.bool
        else if f.type == "integer" then types.ints.between f.min f.max
        else if f.type == "enum" then types.enum f.values
        else if f.type == "strings" then types.listOf types.str
        else if f.type == "list" then types.attrsOf (itemModule f.fields f.item_key)
        else if f.type == "object" then types.submodule { options = fieldOptions f.fields { }; }
        else if f.type == "map" then types.attrsOf (types.submodule { options = fieldOptions f.fields { }; })
        else throw "vmd: schema type ${f.type} unknown to nix/lib.nix";

      # Required fields have no default (Nix says they are missing); the
      # rest default to null: left out, vmd's default applies.
      fieldOption = f: over:
        if over ? ${f.key} then over.${f.key}
        else if f.required then mkOption { type = fieldType f; description = describe f; }
        else mkOption { type = types.nullOr (fieldType f); default = null; description = describe f; };

      fieldOptions = fields: over:
        let named = byNixName fields; in
        mapAttrs (_: f: fieldOption f over) named;

      # A list item whose naming field defaults to its attribute name.
      itemModule = fields: keyField: types.submodule ({ name, ... }: {
        options = fieldOptions fields {
          ${keyField} = mkOption {
            type = fieldType (fields.${keyField} // { key = keyField; });
            default = name;
            description = describe (fields.${keyField} // { key = keyField; }) + " Default: the attribute name.";
          };
        };
      });
    in
    {
      # The options of one VM definition. `over` replaces the declaration
      # of a field by its JSON name (the modules give "name" and "system"
      # their own).
      definitionOptions = over: fieldOptions schema.definition over;
      settingsOptions = over: fieldOptions schema.settings over;
    };
in
{
  inherit schema toDefinition dropNulls;

  # { name = cfg; ... } -> { name = definition; ... }
  toDefinitions = vms: mapAttrs toDefinition vms;

  # Settings in Nix spelling -> the JSON object of /etc/vmd/vmd.json.
  toSettings = settings: toJSONObject schema.settings settings;

  # { name = cfg; ... } -> { "vmd/vms.d/name.json" = JSON text; ... }
  toEtcFiles = vms: listToAttrs (map (n: {
    name = "vmd/vms.d/${n}.json";
    value = builtins.toJSON (toDefinition n vms.${n});
  }) (attrNames vms));

  # The UDP ports of the WireGuard hubs among settings.networks (JSON).
  hubPorts = settingsJSON: concatMap (n:
    let net = settingsJSON.networks.${n}; in
    if net.type != "wireguard" then [ ]
    else if (net.listen_port or 0) == 0 then [ 51820 ]
    else [ net.listen_port ]
  ) (attrNames (settingsJSON.networks or { }));

  # mkOptionsWith nixpkgs.lib -> { definitionOptions; settingsOptions; }
  options = mkOptionsWith;
}
