/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Table-driven conversion between JSON objects and plain C structs.
 *
 * Each row names a key, a type, an offsetof() target and, where needed, a
 * range, an enum, a string check or a nested table. Parsing collects every
 * error with its field path ("disks[1].size_mib") instead of stopping at
 * the first one, and unknown keys are errors. No json_t outlives parsing. */

#include <jansson.h>

#include "util.h"

enum schema_type {
	SCHEMA_STRING, /* char *           */
	SCHEMA_BOOL,   /* bool             */
	SCHEMA_U32,    /* uint32_t         */
	SCHEMA_U64,    /* uint64_t         */
	SCHEMA_ENUM,   /* int              */
	SCHEMA_STRV,   /* char **          */
	SCHEMA_ARRAY,  /* void *items + size_t count, items described by .sub */
	SCHEMA_OBJECT, /* void *item (NULL when absent), described by .sub */
	SCHEMA_MAP,    /* {"NAME": {...}, ...}: like SCHEMA_ARRAY, items sorted by
	                * NAME, which goes to the char * at .map_key_offset of
	                * each item and is checked with .check */
};

/* Returns NULL if the value is fine, else a reason ("must be absolute"). */
typedef const char *(*schema_check_fn)(const char *value);

struct schema_field {
	const char *key;
	enum schema_type type;
	size_t offset;
	bool required;
	/* SCHEMA_U32/U64 range and default; def_none (U32 only): no default of its own,
	 * absent is 0 (which the range excludes) and something else applies. */
	uint64_t min, max, def_uint;
	bool def_none;
	/* SCHEMA_BOOL default. */
	bool def_bool;
	/* SCHEMA_STRING default (NULL: unset). */
	const char *def_string;
	/* SCHEMA_STRING and each SCHEMA_STRV element. */
	schema_check_fn check;
	/* SCHEMA_ENUM: NULL-terminated names; the value is the index. */
	const char *const *enum_names;
	int def_enum;
	/* SCHEMA_ARRAY: element table, element size, offset of the count. */
	const struct schema_field *sub;
	size_t item_size;
	size_t count_offset;
	/* SCHEMA_ARRAY, SCHEMA_MAP and SCHEMA_STRV: maximum number of elements. */
	size_t max_items;
	/* SCHEMA_MAP: where each item keeps its name. */
	size_t map_key_offset;
	/* For people and for nix/: what the field means, and the name of the
	 * string format .check enforces ("path", "name", "cidr", ...).
	 * `vmd schema` prints both; the NixOS module builds its options from
	 * that output, so the two cannot drift apart. */
	const char *doc;
	const char *format;
};

/* A list of "FIELD: reason" lines. */
struct schema_errors {
	char **lines; /* NULL-terminated (a strv) once there is one */
	size_t n;
};
void schema_errors_clear(struct schema_errors *e);
/* Appends src's lines to dst and empties src. */
void schema_errors_move(struct schema_errors *dst, struct schema_errors *src);
_printf_(3, 4) void schema_error(struct schema_errors *e, const char *field, const char *fmt, ...);
/* A reason about the whole file, with no field: "not a regular file". */
_printf_(2, 3) void schema_error_file(struct schema_errors *e, const char *fmt, ...);

/* Definitions and settings are small. */
#define SCHEMA_FILE_MAX (1024 * 1024)
/* Reads a definition or settings file, adding to errors why it cannot be:
 * too large, not a regular file (a FIFO or a device would block the
 * daemon), unreadable. optional: a missing file is -ENOENT and no error. */
int schema_read_file(const char *path, bool optional, char **ret, size_t *ret_len, struct schema_errors *errors);

/* Fills obj from json per table. Always leaves obj in a state that
 * schema_free() accepts. Returns the number of errors added (0 = valid). */
size_t schema_parse(const struct schema_field *table, json_t *json, void *obj, const char *path,
		    struct schema_errors *errors);
void schema_free(const struct schema_field *table, void *obj);
/* Canonical JSON of obj: every field, defaults included; unset strings
 * are left out. */
json_t *schema_to_json(const struct schema_field *table, const void *obj);

/* Field by field, what schema_to_json() would make equal. */
bool schema_equal(const struct schema_field *table, const void *a, const void *b);

/* The table as a JSON document: per field its type, Nix name, default,
 * limits, allowed values, format and doc, nested tables under "fields". */
json_t *schema_describe(const struct schema_field *table);
/* "memory_mib" -> "memoryMiB": the field's name in the Nix modules. */
char *schema_nix_name(const char *key);

/* Loads a JSON document from a buffer; syntax errors go to errors under
 * the field name "json". */
json_t *schema_load(const char *buf, size_t len, struct schema_errors *errors);

/* Common string checks. */
const char *check_name(const char *s);      /* [a-z0-9-], 1..32, no leading '-' */
const char *check_abs_path(const char *s);  /* absolute, normalised, cmdline-safe */
const char *check_guest_path(const char *s);/* check_abs_path, and not / or a special dir */
const char *check_nonempty(const char *s);
