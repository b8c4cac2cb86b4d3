/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tables described rather than applied: schema_describe() turns a
 * table into the JSON document `vmd schema` prints, with each field's
 * type, limits, default, doc, format and, where the format is a plain
 * regular expression, its pattern; schema_nix_name() gives the field's
 * name in the Nix modules, which build their options from that output. */
#include <ctype.h>

#include "schema.h"

char *schema_nix_name(const char *key)
{
	size_t n = strlen(key);
	char *out = malloc(n + 1), *o = out;
	bool up = false;

	if (!out)
		return NULL;
	for (const char *p = key; *p; p++) {
		if (*p == '_') {
			up = true;
			continue;
		}
		/* Units keep their usual spelling: memory_mib -> memoryMiB. */
		if (up && startswith(p, "mib") && (p[3] == 0 || p[3] == '_')) {
			memcpy(o, "MiB", 3);
			o += 3;
			p += 2;
			up = false;
			continue;
		}
		*o++ = up ? (char)toupper((unsigned char)*p) : *p;
		up = false;
	}
	*o = 0;
	return out;
}

/* Formats whose rule is a plain regular expression (POSIX ERE, as Nix's
 * types.strMatching takes it); the rest are checked by vmd itself. */
static const char *format_pattern(const char *format)
{
	static const struct {
		const char *format, *pattern;
	} table[] = {
		{ "name", "[a-z0-9][a-z0-9-]{0,31}" },
		{ "disk-name", "[a-z0-9][a-z0-9-]{0,19}" },
		{ "ifname", "[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}" },
		{ "group", "[A-Za-z0-9_.-]{1,32}" },
	};

	for (size_t i = 0; format && i < ELEMENTSOF(table); i++)
		if (streq(format, table[i].format))
			return table[i].pattern;
	return NULL;
}

static const char *describe_type(enum schema_type t)
{
	static const char *const names[] = {
		[SCHEMA_STRING] = "string", [SCHEMA_BOOL] = "bool",     [SCHEMA_U32] = "integer",
		[SCHEMA_U64] = "integer",   [SCHEMA_ENUM] = "enum",     [SCHEMA_STRV] = "strings",
		[SCHEMA_ARRAY] = "list",    [SCHEMA_OBJECT] = "object", [SCHEMA_MAP] = "map",
	};
	return names[t];
}

static int describe_field(const struct schema_field *f, json_t *o)
{
	_cleanup_free_ char *nix = schema_nix_name(f->key);
	const char *pattern = format_pattern(f->format);
	int r = 0;

	if (!nix)
		return -ENOMEM;
	r |= json_object_set_new(o, "type", json_string(describe_type(f->type)));
	r |= json_object_set_new(o, "nix_name", json_string(nix));
	r |= json_object_set_new(o, "required", json_boolean(f->required));
	if (f->doc)
		r |= json_object_set_new(o, "doc", json_string(f->doc));
	if (f->format)
		r |= json_object_set_new(o, "format", json_string(f->format));
	if (pattern)
		r |= json_object_set_new(o, "pattern", json_string(pattern));
	switch (f->type) {
	case SCHEMA_STRING:
		if (f->def_string)
			r |= json_object_set_new(o, "default", json_string(f->def_string));
		break;
	case SCHEMA_BOOL:
		if (!f->required)
			r |= json_object_set_new(o, "default", json_boolean(f->def_bool));
		break;
	case SCHEMA_U32:
	case SCHEMA_U64:
		r |= json_object_set_new(o, "min", json_integer((json_int_t)f->min));
		r |= json_object_set_new(o, "max", json_integer((json_int_t)f->max));
		if (!f->required && !f->def_none)
			r |= json_object_set_new(o, "default", json_integer((json_int_t)f->def_uint));
		break;
	case SCHEMA_ENUM: {
		json_t *v = json_array();

		for (size_t i = 0; v && f->enum_names[i]; i++)
			r |= json_array_append_new(v, json_string(f->enum_names[i]));
		r |= json_object_set_new(o, "values", v);
		if (!f->required)
			r |= json_object_set_new(o, "default", json_string(f->enum_names[f->def_enum]));
		break;
	}
	case SCHEMA_ARRAY:
		/* The first field of an item names it (keys: name, shares:
		 * tag): Nix writes such lists as attribute sets by that name. */
		r |= json_object_set_new(o, "item_key", json_string(f->sub[0].key));
		/* fall through */
	case SCHEMA_STRV:
	case SCHEMA_MAP:
		r |= json_object_set_new(o, "max_items", json_integer((json_int_t)f->max_items));
		break;
	case SCHEMA_OBJECT:
		break;
	}
	if (f->sub)
		r |= json_object_set_new(o, "fields", schema_describe(f->sub));
	return r ? -ENOMEM : 0;
}

json_t *schema_describe(const struct schema_field *table)
{
	_cleanup_(json_decrefp) json_t *o = json_object();

	for (const struct schema_field *f = table; o && f->key; f++) {
		_cleanup_(json_decrefp) json_t *d = json_object();

		if (!d || describe_field(f, d) < 0 || json_object_set_new(o, f->key, TAKE_PTR(d)) < 0)
			return NULL;
	}
	return TAKE_PTR(o);
}
