/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "defset.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory contributes its *.json files, sorted, not recursively. */
static int expand(const char *path, char ***files)
{
	size_t first = strv_length(*files);
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return strv_extend(files, path);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' || n < 6 || !streq(de->d_name + n - 5, ".json"))
			continue;
		if (strv_consume(files, path_join(path, de->d_name)) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	if (strv_length(*files) > first)
		qsort(*files + first, strv_length(*files) - first, sizeof(char *), cmp_str);
	return 0;
}

static struct schema_errors *errors_for(struct defset_errors *e, const char *file)
{
	struct defset_error *f;

	for (size_t i = 0; i < e->n; i++)
		if (streq(e->files[i].file, file))
			return &e->files[i].errors;
	f = realloc(e->files, (e->n + 1) * sizeof(*f));
	if (!f)
		return NULL;
	e->files = f;
	e->files[e->n] = (struct defset_error){ .file = strdup(file) };
	if (!e->files[e->n].file)
		return NULL;
	return &e->files[e->n++].errors;
}

static void add_errors(struct defset_errors *e, const char *file, struct schema_errors *src)
{
	struct schema_errors *dst;

	if (src->n == 0)
		return;
	dst = errors_for(e, file);
	if (dst)
		schema_errors_move(dst, src);
	schema_errors_clear(src);
}

static int cmp_entry(const void *a, const void *b)
{
	const struct defset_entry *x = *(const struct defset_entry *const *)a;
	const struct defset_entry *y = *(const struct defset_entry *const *)b;
	int c = strcmp(x->def->name, y->def->name);

	/* Entries are in file order, so the lower address came first. */
	return c ? c : (x < y ? -1 : x > y);
}

/* Names are unique across the set; sorting keeps this O(n log n) for sets
 * of thousands. The later file gets the error. */
static void check_duplicates(struct defset *set, struct defset_errors *errors)
{
	_cleanup_free_ struct defset_entry **sorted = calloc(set->n + 1, sizeof(*sorted));

	if (!sorted)
		return;
	for (size_t i = 0; i < set->n; i++)
		sorted[i] = &set->entries[i];
	qsort(sorted, set->n, sizeof(*sorted), cmp_entry);
	for (size_t i = 1, first = 0; i < set->n; i++) {
		struct schema_errors *e;

		if (!streq(sorted[i]->def->name, sorted[first]->def->name)) {
			first = i;
			continue;
		}
		e = errors_for(errors, sorted[i]->file);
		if (e)
			schema_error(e, "name", "\"%s\" is already defined in %s", sorted[i]->def->name,
				     sorted[first]->file);
	}
}

int defset_load(char *const *paths, const char *store_dir, struct defset *set, struct defset_errors *errors)
{
	_cleanup_strv_free_ char **files = NULL;
	_cleanup_free_ char *store = NULL;
	size_t before = errors->n;

	if (store_dir) {
		store = def_resolve_store(store_dir);
		if (!store) {
			struct schema_errors *e = errors_for(errors, store_dir);

			if (e)
				schema_error(e, "store_dir", "cannot resolve: %s", strerror(errno));
			return -EINVAL;
		}
	}

	for (size_t i = 0; paths && paths[i]; i++)
		if (expand(paths[i], &files) < 0) {
			struct schema_errors *e = errors_for(errors, paths[i]);
			if (e)
				schema_error(e, NULL, "cannot read directory: %s", strerror(errno));
		}
	set->entries = calloc(strv_length(files) + 1, sizeof(*set->entries));
	if (!set->entries)
		return -ENOMEM;

	for (size_t i = 0; files && files[i]; i++) {
		struct schema_errors e = {};
		struct vm_def *d = NULL;

		if (def_load_file(files[i], &d, &e) == 0 && store)
			def_check_system(d, store, NULL, &e);
		add_errors(errors, files[i], &e);
		if (d) {
			set->entries[set->n].file = strdup(files[i]);
			set->entries[set->n++].def = d;
		}
	}
	check_duplicates(set, errors);
	return errors->n == before ? 0 : -EINVAL;
}

void defset_clear(struct defset *set)
{
	for (size_t i = 0; i < set->n; i++) {
		free(set->entries[i].file);
		def_free(set->entries[i].def);
	}
	free(set->entries);
	*set = (struct defset){};
}

void defset_errors_clear(struct defset_errors *errors)
{
	for (size_t i = 0; i < errors->n; i++) {
		free(errors->files[i].file);
		schema_errors_clear(&errors->files[i].errors);
	}
	free(errors->files);
	*errors = (struct defset_errors){};
}

void defset_errors_print(const struct defset_errors *errors, FILE *f)
{
	for (size_t i = 0; i < errors->n; i++)
		for (size_t j = 0; j < errors->files[i].errors.n; j++)
			fprintf(f, "%s: %s\n", errors->files[i].file, errors->files[i].errors.lines[j]);
	fflush(f);
}

json_t *defset_errors_json(const struct defset_errors *errors)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < errors->n; i++)
		for (size_t j = 0; j < errors->files[i].errors.n; j++) {
			_cleanup_free_ char *line =
				xasprintf("%s: %s", errors->files[i].file, errors->files[i].errors.lines[j]);

			if (!line || json_array_append_new(a, json_string(line)) < 0) {
				json_decref(a);
				return NULL;
			}
		}
	return a;
}

const struct vm_def *defset_find(const struct defset *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->entries[i].def && streq(set->entries[i].def->name, name))
			return set->entries[i].def;
	return NULL;
}

struct vm_def *defset_take(struct defset *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->entries[i].def && streq(set->entries[i].def->name, name))
			return TAKE_PTR(set->entries[i].def);
	return NULL;
}
