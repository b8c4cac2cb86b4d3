/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "addr.h"
#include "defset.h"
#include "netname.h"

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

void defset_errors_add(struct defset_errors *e, const char *file, struct schema_errors *src)
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

/* One claim on something only one VM may have: a MAC, an address on a
 * network, a host interface name. */
struct claim {
	char key[64];
	const char *field;
	const struct defset_entry *e;
};

static int cmp_claim(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : (x->e < y->e ? -1 : x->e > y->e);
}

static void check_network_clashes(struct defset *set, struct defset_errors *errors)
{
	_cleanup_free_ struct claim *c = NULL;
	size_t n = 0;

	for (size_t i = 0; i < set->n; i++)
		n += (set->entries[i].def->network ? 3 : 0) + (set->entries[i].def->wireguard ? 1 : 0);
	if (n == 0)
		return;
	c = calloc(n, sizeof(*c));
	if (!c)
		return;
	n = 0;
	for (size_t i = 0; i < set->n; i++) {
		const struct defset_entry *e = &set->entries[i];
		const struct vm_def *d = e->def;
		char buf[ADDR_STR_MAX > LINK_NAME_MAX + 1 ? ADDR_STR_MAX : LINK_NAME_MAX + 1];
		struct cidr a;

		if (d->network) {
			uint8_t mac[6];
			char m[18];

			def_mac(d, mac);
			mac_format(mac, m);
			snprintf(c[n].key, sizeof(c[n].key), "mac %s", m);
			c[n].field = "network.mac";
			c[n++].e = e;
			link_name_for_vm(d->name, buf);
			snprintf(c[n].key, sizeof(c[n].key), "tap %s", buf);
			c[n].field = "name";
			c[n++].e = e;
			if (d->network->address && cidr_parse(d->network->address, &a) == 0) {
				addr_format(a.addr, buf);
				snprintf(c[n].key, sizeof(c[n].key), "address %s on %s", buf, d->network->bridge);
				c[n].field = "network.address";
				c[n++].e = e;
			}
		}
		if (d->wireguard && cidr_parse(d->wireguard->address, &a) == 0) {
			addr_format(a.addr, buf);
			snprintf(c[n].key, sizeof(c[n].key), "address %s on %s", buf, d->wireguard->hub);
			c[n].field = "wireguard.address";
			c[n++].e = e;
		}
	}
	qsort(c, n, sizeof(*c), cmp_claim);
	for (size_t i = 1, first = 0; i < n; i++) {
		struct schema_errors *err;

		if (!streq(c[i].key, c[first].key)) {
			first = i;
			continue;
		}
		err = errors_for(errors, c[i].e->file);
		if (err)
			schema_error(err, c[i].field, "VMs %s and %s (%s) both have %s", c[i].e->def->name,
				     c[first].e->def->name, c[first].e->file, c[i].key);
	}
}

int defset_load(char *const *paths, const struct host_config *host, struct defset *set,
		struct defset_errors *errors)
{
	const char *store_dir = host ? host->store_dir : NULL;
	_cleanup_strv_free_ char **files = NULL;
	_cleanup_free_ char *store = NULL;
	size_t before = errors->n;

	if (store_dir) {
		store = def_resolve_store(store_dir);
		if (!store) {
			int err = errno; /* before errors_for() allocates */
			struct schema_errors *e = errors_for(errors, store_dir);

			if (e)
				schema_error(e, "store_dir", "cannot resolve: %s", strerror(err));
			return -EINVAL;
		}
	}

	for (size_t i = 0; paths && paths[i]; i++) {
		/* expand()'s error, not errno: strv_consume() sets none. */
		int r = expand(paths[i], &files);

		if (r < 0) {
			struct schema_errors *e = errors_for(errors, paths[i]);
			if (e)
				schema_error(e, NULL, "cannot read directory: %s", strerror(-r));
		}
	}
	set->entries = calloc(strv_length(files) + 1, sizeof(*set->entries));
	if (!set->entries)
		return -ENOMEM;

	for (size_t i = 0; files && files[i]; i++) {
		struct schema_errors e = {};
		struct vm_def *d = NULL;

		if (def_load_file(files[i], &d, &e) == 0 && host) {
			def_check_system(d, host->image_system, store, NULL, &e);
			host_check_def(host, d, &e);
		}
		defset_errors_add(errors, files[i], &e);
		if (d) {
			set->entries[set->n].file = strdup(files[i]);
			set->entries[set->n++].def = d;
		}
	}
	check_duplicates(set, errors);
	check_network_clashes(set, errors);
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

void defset_check_fit(const struct defset *set, const struct host_resources *res, struct defset_errors *warnings)
{
	for (size_t i = 0; i < set->n; i++) {
		struct schema_errors w = {};

		host_check_fit(res, set->entries[i].def, &w);
		defset_errors_add(warnings, set->entries[i].file, &w);
	}
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
