/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tables applied to values: JSON parsed into plain structs (every
 * error collected with its field path), freed, turned back into canonical
 * JSON and compared; the list of errors, the JSON loader and the common
 * string checks. schema-describe.c describes the tables themselves. */
#include <stdio.h>

#include "schema.h"

/* Field paths are bounded by the input (keys are short in valid input; a
 * long one is cut, which only shortens an error message). */
#define FIELD_PATH_MAX 256

#define FIELD_PTR(obj, f, T) ((T *)((char *)(obj) + (f)->offset))
#define FIELD_CPTR(obj, f, T) ((T const *)((const char *)(obj) + (f)->offset))

void schema_errors_clear(struct schema_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->lines[i]);
	free(e->lines);
	e->lines = NULL;
	e->n = 0;
}

void schema_errors_move(struct schema_errors *dst, struct schema_errors *src)
{
	char **l;

	if (src->n == 0)
		return;
	l = realloc(dst->lines, (dst->n + src->n + 1) * sizeof(char *));
	if (!l) {
		schema_errors_clear(src);
		return;
	}
	memcpy(l + dst->n, src->lines, src->n * sizeof(char *));
	dst->lines = l;
	dst->n += src->n;
	dst->lines[dst->n] = NULL;
	free(src->lines);
	src->lines = NULL;
	src->n = 0;
}

/* field NULL: the reason is about the file, not about a field in it. */
_printf_(3, 0) static void add_error(struct schema_errors *e, const char *field, const char *fmt, va_list ap)
{
	char reason[512], **l;
	char *line;

	vsnprintf(reason, sizeof(reason), fmt, ap);
	line = field ? xasprintf("%s: %s", field, reason) : strdup(reason);
	l = realloc(e->lines, (e->n + 2) * sizeof(char *));
	if (!line || !l) {
		/* Out of memory while reporting: keep what we have. */
		free(line);
		if (l)
			e->lines = l;
		return;
	}
	e->lines = l;
	e->lines[e->n++] = line;
	e->lines[e->n] = NULL;
}

void schema_error(struct schema_errors *e, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error(e, field && *field ? field : "(root)", fmt, ap);
	va_end(ap);
}

void schema_error_file(struct schema_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_error(e, NULL, fmt, ap);
	va_end(ap);
}

int schema_read_file(const char *path, bool optional, char **ret, size_t *ret_len, struct schema_errors *errors)
{
	int r = read_file(path, SCHEMA_FILE_MAX, ret, ret_len);

	if (r == -ENOENT && optional)
		return r;
	if (r == -EFBIG)
		schema_error(errors, "json", "file is larger than 1 MiB");
	else if (r == -EBADFD)
		schema_error_file(errors, "not a regular file");
	else if (r < 0)
		schema_error(errors, "json", "cannot read: %s", strerror(-r));
	return r;
}

static const char *field_path(char buf[FIELD_PATH_MAX], const char *path, const char *key)
{
	snprintf(buf, FIELD_PATH_MAX, "%.200s%s%.50s", path && *path ? path : "", path && *path ? "." : "", key);
	return buf;
}

static const char *json_type_name(enum schema_type t)
{
	switch (t) {
	case SCHEMA_STRING:
		return "a string";
	case SCHEMA_BOOL:
		return "a boolean";
	case SCHEMA_U32:
	case SCHEMA_U64:
		return "an integer";
	case SCHEMA_ENUM:
		return "a string";
	case SCHEMA_STRV:
		return "an array of strings";
	case SCHEMA_ARRAY:
		return "an array of objects";
	case SCHEMA_OBJECT:
	case SCHEMA_MAP:
		return "an object";
	}
	return "?";
}

static void set_default(const struct schema_field *f, void *obj)
{
	switch (f->type) {
	case SCHEMA_STRING:
		*FIELD_PTR(obj, f, char *) = f->def_string ? strdup(f->def_string) : NULL;
		break;
	case SCHEMA_BOOL:
		*FIELD_PTR(obj, f, bool) = f->def_bool;
		break;
	case SCHEMA_U32:
		*FIELD_PTR(obj, f, uint32_t) = (uint32_t)f->def_uint;
		break;
	case SCHEMA_U64:
		*FIELD_PTR(obj, f, uint64_t) = f->def_uint;
		break;
	case SCHEMA_ENUM:
		*FIELD_PTR(obj, f, int) = f->def_enum;
		break;
	case SCHEMA_STRV:
		*FIELD_PTR(obj, f, char **) = NULL;
		break;
	case SCHEMA_ARRAY:
	case SCHEMA_MAP:
		*FIELD_PTR(obj, f, void *) = NULL;
		*(size_t *)((char *)obj + f->count_offset) = 0;
		break;
	case SCHEMA_OBJECT:
		*FIELD_PTR(obj, f, void *) = NULL;
		break;
	}
}

static void parse_enum(const struct schema_field *f, json_t *v, void *obj, const char *fp,
		       struct schema_errors *errors)
{
	const char *s = json_string_value(v);

	if (json_string_length(v) != strlen(s)) {
		schema_error(errors, fp, "must not contain NUL bytes");
		return;
	}
	_cleanup_free_ char *names = NULL;
	size_t len = 0;

	for (int i = 0; f->enum_names[i]; i++)
		if (streq(s, f->enum_names[i])) {
			*FIELD_PTR(obj, f, int) = i;
			return;
		}
	for (int i = 0; f->enum_names[i]; i++)
		len += strlen(f->enum_names[i]) + 2;
	names = calloc(1, len + 1);
	if (!names)
		return;
	for (int i = 0; f->enum_names[i]; i++) {
		if (i > 0)
			strcat(names, ", ");
		strcat(names, f->enum_names[i]);
	}
	schema_error(errors, fp, "must be one of: %s", names);
}

static void parse_uint(const struct schema_field *f, json_t *v, void *obj, const char *fp,
		       struct schema_errors *errors)
{
	json_int_t i = json_integer_value(v);

	if (i < 0 || (uint64_t)i < f->min || (uint64_t)i > f->max) {
		schema_error(errors, fp, "must be %llu..%llu", (unsigned long long)f->min,
			     (unsigned long long)f->max);
		return;
	}
	if (f->type == SCHEMA_U32)
		*FIELD_PTR(obj, f, uint32_t) = (uint32_t)i;
	else
		*FIELD_PTR(obj, f, uint64_t) = (uint64_t)i;
}

static void parse_strv(const struct schema_field *f, json_t *v, void *obj, const char *fp,
		       struct schema_errors *errors)
{
	char ***l = FIELD_PTR(obj, f, char **);
	size_t i;
	json_t *e;

	if (f->max_items && json_array_size(v) > f->max_items) {
		schema_error(errors, fp, "must have at most %zu elements", f->max_items);
		return;
	}
	json_array_foreach(v, i, e) {
		char ep[FIELD_PATH_MAX + 32];
		const char *why;

		snprintf(ep, sizeof(ep), "%s[%zu]", fp, i);
		if (!json_is_string(e)) {
			schema_error(errors, ep, "must be a string");
			continue;
		}
		if (json_string_length(e) != strlen(json_string_value(e))) {
			schema_error(errors, ep, "must not contain NUL bytes");
			continue;
		}
		why = f->check ? f->check(json_string_value(e)) : NULL;
		if (why) {
			schema_error(errors, ep, "%s", why);
			continue;
		}
		if (strv_extend(l, json_string_value(e)) < 0)
			schema_error(errors, ep, "out of memory");
	}
}

static void parse_array(const struct schema_field *f, json_t *v, void *obj, const char *fp,
			struct schema_errors *errors)
{
	size_t n = json_array_size(v), i;
	size_t *count = (size_t *)((char *)obj + f->count_offset);
	char *items;
	json_t *e;

	if (f->max_items && n > f->max_items) {
		schema_error(errors, fp, "must have at most %zu elements", f->max_items);
		return;
	}
	if (n == 0)
		return;
	items = calloc(n, f->item_size);
	if (!items) {
		schema_error(errors, fp, "out of memory");
		return;
	}
	*FIELD_PTR(obj, f, void *) = items;
	json_array_foreach(v, i, e) {
		char ep[FIELD_PATH_MAX + 32];

		snprintf(ep, sizeof(ep), "%s[%zu]", fp, i);
		/* Count first: schema_free() must see every item, even a bad one. */
		*count = i + 1;
		schema_parse(f->sub, e, items + i * f->item_size, ep, errors);
	}
}

static void parse_object(const struct schema_field *f, json_t *v, void *obj, const char *fp,
			 struct schema_errors *errors)
{
	void *item = calloc(1, f->item_size);

	if (!item) {
		schema_error(errors, fp, "out of memory");
		return;
	}
	*FIELD_PTR(obj, f, void *) = item;
	schema_parse(f->sub, v, item, fp, errors);
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void parse_map(const struct schema_field *f, json_t *v, void *obj, const char *fp,
		      struct schema_errors *errors)
{
	size_t n = json_object_size(v), i = 0;
	size_t *count = (size_t *)((char *)obj + f->count_offset);
	_cleanup_free_ const char **keys = NULL;
	const char *key;
	char *items;
	json_t *e;

	if (f->max_items && n > f->max_items) {
		schema_error(errors, fp, "must have at most %zu entries", f->max_items);
		return;
	}
	if (n == 0)
		return;
	/* Sorted by name: the order of a JSON object means nothing. */
	keys = calloc(n, sizeof(*keys));
	items = calloc(n, f->item_size);
	if (!keys || !items) {
		free(items);
		schema_error(errors, fp, "out of memory");
		return;
	}
	json_object_foreach(v, key, e)
		keys[i++] = key;
	qsort(keys, n, sizeof(*keys), cmp_key);
	*FIELD_PTR(obj, f, void *) = items;
	for (i = 0; i < n; i++) {
		char *item = items + i * f->item_size;
		const char *why = f->check ? f->check(keys[i]) : NULL;
		char ep[FIELD_PATH_MAX + 64];

		snprintf(ep, sizeof(ep), "%s.%.60s", fp, keys[i]);
		*count = i + 1;
		schema_parse(f->sub, json_object_get(v, keys[i]), item, ep, errors);
		if (why)
			schema_error(errors, ep, "%s", why);
		*(char **)(item + f->map_key_offset) = strdup(keys[i]);
		if (!*(char **)(item + f->map_key_offset))
			schema_error(errors, ep, "out of memory");
	}
}

size_t schema_parse(const struct schema_field *table, json_t *json, void *obj, const char *path,
		    struct schema_errors *errors)
{
	size_t before = errors->n;
	const char *key;
	json_t *v;

	for (const struct schema_field *f = table; f->key; f++)
		set_default(f, obj);

	if (!json_is_object(json)) {
		schema_error(errors, path, "must be an object");
		return errors->n - before;
	}

	json_object_foreach(json, key, v) {
		const struct schema_field *f;
		char fpbuf[FIELD_PATH_MAX];
		bool ok;
/* The field's path, only formatted when needed (errors, nested fields). */
#define fp field_path(fpbuf, path, key)

		for (f = table; f->key; f++)
			if (streq(f->key, key))
				break;
		if (!f->key) {
			schema_error(errors, fp, "unknown key");
			continue;
		}
		switch (f->type) {
		case SCHEMA_STRING:
		case SCHEMA_ENUM:
			ok = json_is_string(v);
			break;
		case SCHEMA_BOOL:
			ok = json_is_boolean(v);
			break;
		case SCHEMA_U32:
		case SCHEMA_U64:
			ok = json_is_integer(v);
			break;
		case SCHEMA_OBJECT:
		case SCHEMA_MAP:
			ok = json_is_object(v);
			break;
		default:
			ok = json_is_array(v);
		}
		if (!ok) {
			schema_error(errors, fp, "must be %s", json_type_name(f->type));
			continue;
		}
		switch (f->type) {
		case SCHEMA_STRING: {
			const char *s = json_string_value(v), *why = f->check ? f->check(s) : NULL;
			char **dst = FIELD_PTR(obj, f, char *);

			if (json_string_length(v) != strlen(s))
				why = "must not contain NUL bytes";
			if (why) {
				schema_error(errors, fp, "%s", why);
				break;
			}
			free(*dst);
			*dst = strdup(s);
			if (!*dst)
				schema_error(errors, fp, "out of memory");
			break;
		}
		case SCHEMA_BOOL:
			*FIELD_PTR(obj, f, bool) = json_is_true(v);
			break;
		case SCHEMA_U32:
		case SCHEMA_U64:
			parse_uint(f, v, obj, fp, errors);
			break;
		case SCHEMA_ENUM:
			parse_enum(f, v, obj, fp, errors);
			break;
		case SCHEMA_STRV:
			parse_strv(f, v, obj, fp, errors);
			break;
		case SCHEMA_ARRAY:
			parse_array(f, v, obj, fp, errors);
			break;
		case SCHEMA_OBJECT:
			parse_object(f, v, obj, fp, errors);
			break;
		case SCHEMA_MAP:
			parse_map(f, v, obj, fp, errors);
			break;
		}
	}

	for (const struct schema_field *f = table; f->key; f++)
		if (f->required && !json_object_get(json, f->key)) {
			char fpbuf[FIELD_PATH_MAX];

			schema_error(errors, field_path(fpbuf, path, f->key), "is required");
		}

	return errors->n - before;
#undef fp
}

void schema_free(const struct schema_field *table, void *obj)
{
	for (const struct schema_field *f = table; f->key; f++)
		switch (f->type) {
		case SCHEMA_STRING: {
			char **s = FIELD_PTR(obj, f, char *);
			free(*s);
			*s = NULL;
			break;
		}
		case SCHEMA_STRV: {
			char ***l = FIELD_PTR(obj, f, char **);
			strv_free(*l);
			*l = NULL;
			break;
		}
		case SCHEMA_ARRAY: {
			char **items = FIELD_PTR(obj, f, char *);
			size_t *count = (size_t *)((char *)obj + f->count_offset);

			for (size_t i = 0; *items && i < *count; i++)
				schema_free(f->sub, *items + i * f->item_size);
			free(*items);
			*items = NULL;
			*count = 0;
			break;
		}
		case SCHEMA_MAP: {
			char **items = FIELD_PTR(obj, f, char *);
			size_t *count = (size_t *)((char *)obj + f->count_offset);

			for (size_t i = 0; *items && i < *count; i++) {
				char *item = *items + i * f->item_size;

				schema_free(f->sub, item);
				free(*(char **)(item + f->map_key_offset));
			}
			free(*items);
			*items = NULL;
			*count = 0;
			break;
		}
		case SCHEMA_OBJECT: {
			void **item = FIELD_PTR(obj, f, void *);

			if (*item)
				schema_free(f->sub, *item);
			free(*item);
			*item = NULL;
			break;
		}
		default:
			break;
		}
}

json_t *schema_to_json(const struct schema_field *table, const void *obj)
{
	_cleanup_(json_decrefp) json_t *o = json_object();

	if (!o)
		return NULL;
	for (const struct schema_field *f = table; f->key; f++) {
		_cleanup_(json_decrefp) json_t *v = NULL;

		switch (f->type) {
		case SCHEMA_STRING: {
			const char *s = *FIELD_CPTR(obj, f, char *);
			if (!s)
				continue;
			v = json_string(s);
			break;
		}
		case SCHEMA_BOOL:
			v = json_boolean(*FIELD_CPTR(obj, f, bool));
			break;
		case SCHEMA_U32:
			if (f->def_none && *FIELD_CPTR(obj, f, uint32_t) == 0)
				continue;
			v = json_integer(*FIELD_CPTR(obj, f, uint32_t));
			break;
		case SCHEMA_U64:
			v = json_integer((json_int_t)*FIELD_CPTR(obj, f, uint64_t));
			break;
		case SCHEMA_ENUM:
			v = json_string(f->enum_names[*FIELD_CPTR(obj, f, int)]);
			break;
		case SCHEMA_STRV: {
			char *const *l = *FIELD_CPTR(obj, f, char **);

			v = json_array();
			for (size_t i = 0; v && l && l[i]; i++)
				if (json_array_append_new(v, json_string(l[i])) < 0)
					return NULL;
			break;
		}
		case SCHEMA_ARRAY: {
			const char *items = *FIELD_CPTR(obj, f, char *);
			size_t count = *(const size_t *)((const char *)obj + f->count_offset);

			v = json_array();
			for (size_t i = 0; v && i < count; i++) {
				json_t *e = schema_to_json(f->sub, items + i * f->item_size);

				if (!e || json_array_append_new(v, e) < 0)
					return NULL;
			}
			break;
		}
		case SCHEMA_MAP: {
			const char *items = *FIELD_CPTR(obj, f, char *);
			size_t count = *(const size_t *)((const char *)obj + f->count_offset);

			v = json_object();
			for (size_t i = 0; v && i < count; i++) {
				const char *item = items + i * f->item_size;
				json_t *e = schema_to_json(f->sub, item);

				if (!e || json_object_set_new(v, *(char *const *)(item + f->map_key_offset), e) < 0)
					return NULL;
			}
			break;
		}
		case SCHEMA_OBJECT: {
			const void *item = *FIELD_CPTR(obj, f, void *);

			if (!item)
				continue;
			v = schema_to_json(f->sub, item);
			break;
		}
		}
		if (!v || json_object_set_new(o, f->key, TAKE_PTR(v)) < 0)
			return NULL;
	}
	return TAKE_PTR(o);
}

bool schema_equal(const struct schema_field *table, const void *a, const void *b)
{
	for (const struct schema_field *f = table; f->key; f++)
		switch (f->type) {
		case SCHEMA_STRING:
			if (!streq_ptr(*FIELD_CPTR(a, f, char *), *FIELD_CPTR(b, f, char *)))
				return false;
			break;
		case SCHEMA_BOOL:
			if (*FIELD_CPTR(a, f, bool) != *FIELD_CPTR(b, f, bool))
				return false;
			break;
		case SCHEMA_U32:
			if (*FIELD_CPTR(a, f, uint32_t) != *FIELD_CPTR(b, f, uint32_t))
				return false;
			break;
		case SCHEMA_U64:
			if (*FIELD_CPTR(a, f, uint64_t) != *FIELD_CPTR(b, f, uint64_t))
				return false;
			break;
		case SCHEMA_ENUM:
			if (*FIELD_CPTR(a, f, int) != *FIELD_CPTR(b, f, int))
				return false;
			break;
		case SCHEMA_STRV: {
			char *const *la = *FIELD_CPTR(a, f, char **), *const *lb = *FIELD_CPTR(b, f, char **);
			size_t n = strv_length(la);

			if (n != strv_length(lb))
				return false;
			for (size_t i = 0; i < n; i++)
				if (!streq(la[i], lb[i]))
					return false;
			break;
		}
		case SCHEMA_ARRAY: {
			const char *ia = *FIELD_CPTR(a, f, char *), *ib = *FIELD_CPTR(b, f, char *);
			size_t na = *(const size_t *)((const char *)a + f->count_offset);
			size_t nb = *(const size_t *)((const char *)b + f->count_offset);

			if (na != nb)
				return false;
			for (size_t i = 0; i < na; i++)
				if (!schema_equal(f->sub, ia + i * f->item_size, ib + i * f->item_size))
					return false;
			break;
		}
		case SCHEMA_MAP: {
			const char *ia = *FIELD_CPTR(a, f, char *), *ib = *FIELD_CPTR(b, f, char *);
			size_t na = *(const size_t *)((const char *)a + f->count_offset);
			size_t nb = *(const size_t *)((const char *)b + f->count_offset);

			if (na != nb)
				return false;
			for (size_t i = 0; i < na; i++) {
				const char *x = ia + i * f->item_size, *y = ib + i * f->item_size;

				if (!streq(*(char *const *)(x + f->map_key_offset), *(char *const *)(y + f->map_key_offset)) ||
				    !schema_equal(f->sub, x, y))
					return false;
			}
			break;
		}
		case SCHEMA_OBJECT: {
			const void *x = *FIELD_CPTR(a, f, void *), *y = *FIELD_CPTR(b, f, void *);

			if (!x || !y) {
				if (x != y)
					return false;
				break;
			}
			if (!schema_equal(f->sub, x, y))
				return false;
			break;
		}
		}
	return true;
}

json_t *schema_load(const char *buf, size_t len, struct schema_errors *errors)
{
	json_error_t err;
	json_t *j;

	/* Duplicate keys are an error, not "last one wins". */
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		schema_error(errors, "json", "line %d, column %d: %s", err.line, err.column, err.text);
	return j;
}

const char *check_nonempty(const char *s)
{
	return *s ? NULL : "must not be empty";
}

const char *check_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 32)
		return "must be 1..32 characters";
	if (s[0] == '-')
		return "must start with a letter or digit";
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return "may only contain a-z, 0-9 and '-'";
	return NULL;
}

/* Paths end up on the kernel command line (init=, systemd.mount-extra=)
 * and in QEMU/virtiofsd options, so they must be plain: absolute,
 * normalised, and free of whitespace, quotes, ':' and ','. */
const char *check_abs_path(const char *s)
{
	size_t n = strlen(s);

	if (s[0] != '/')
		return "must be an absolute path";
	if (n > 1024)
		return "must be at most 1024 characters";
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= ' ' || c == 0x7f || c == ':' || c == ',' || c == '"' || c == '\'' || c == '\\')
			return "must not contain whitespace, control characters, quotes, ':', ',' or '\\'";
	}
	if (strstr(s, "//"))
		return "must not contain '//'";
	if (n > 1 && s[n - 1] == '/')
		return "must not end with '/'";
	for (const char *p = s; (p = strchr(p, '/')); p++)
		if ((p[1] == '.' && (p[2] == '/' || !p[2])) ||
		    (p[1] == '.' && p[2] == '.' && (p[3] == '/' || !p[3])))
			return "must not contain '.' or '..' components";
	return NULL;
}

static bool path_is_or_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

const char *check_guest_path(const char *s)
{
	static const char *const reserved[] = { "/nix/store", "/proc", "/sys", "/dev" };
	const char *why = check_abs_path(s);

	if (why)
		return why;
	if (streq(s, "/"))
		return "must not be /";
	for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
		if (path_is_or_below(s, reserved[i]))
			return "must not be at or below /nix/store, /proc, /sys or /dev";
	if (path_is_or_below("/nix/store", s))
		return "must not hide /nix/store";
	return NULL;
}
