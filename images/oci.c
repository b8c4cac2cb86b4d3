/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>

#include "oci.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define REF_NAME "org.opencontainers.image.ref.name"
#define MAX_STRINGS 4096
#define MAX_STRING (64 * 1024)

static const struct {
	const char *type;
	enum oci_compression compression;
} layer_types[] = {
	{ "application/vnd.oci.image.layer.v1.tar", OCI_LAYER_TAR },
	{ "application/vnd.oci.image.layer.v1.tar+gzip", OCI_LAYER_GZIP },
	{ "application/vnd.oci.image.layer.v1.tar+zstd", OCI_LAYER_ZSTD },
	{ "application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_LAYER_GZIP },
};

void oci_run_clear(struct oci_run *r)
{
	strv_free(r->entrypoint);
	strv_free(r->cmd);
	strv_free(r->env);
	free(r->workdir);
	free(r->user);
	free(r->stop_signal);
	*r = (struct oci_run){};
}

void oci_image_clear(struct oci_image *img)
{
	for (size_t i = 0; i < img->n_layers; i++) {
		free(img->layers[i].digest);
		free(img->layers[i].path);
	}
	free(img->layers);
	free(img->manifest_digest);
	free(img->config_digest);
	strv_free(img->diff_ids);
	free(img->config_path);
	oci_run_clear(&img->run);
	*img = (struct oci_image){};
}

bool oci_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
		return false;
	for (const char *p = s + 7; *p; p++)
		if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
			return false;
	return true;
}

static json_t *load(const char *json, size_t n, const char *what, struct schema_errors *e)
{
	json_error_t err;
	json_t *j;

	if (n > OCI_MAX_JSON) {
		schema_error(e, what, "larger than %d bytes", OCI_MAX_JSON);
		return NULL;
	}
	j = json_loadb(json, n, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		schema_error(e, what, "not valid JSON: line %d: %s", err.line, err.text);
	return j;
}

/* A string without NUL bytes, at most MAX_STRING long; NULL with an error
 * otherwise (or when absent and required). */
static const char *get_string(json_t *obj, const char *key, const char *field, bool required, struct schema_errors *e)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		if (required)
			schema_error(e, field, "required");
		return NULL;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) > MAX_STRING) {
		schema_error(e, field, "must be a string without NUL bytes, at most %d bytes", MAX_STRING);
		return NULL;
	}
	return json_string_value(v);
}

static int dup_string(json_t *obj, const char *key, const char *field, bool required, char **ret,
		      struct schema_errors *e)
{
	size_t before = e->n;
	const char *s = get_string(obj, key, field, required, e);

	if (e->n > before)
		return -EINVAL;
	if (!s)
		return 0;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static int get_strv(json_t *obj, const char *key, const char *field, bool env, char ***ret, struct schema_errors *e)
{
	json_t *v = json_object_get(obj, key), *s;
	_cleanup_strv_free_ char **l = NULL;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > MAX_STRINGS) {
		schema_error(e, field, "must be an array of at most %d strings", MAX_STRINGS);
		return -EINVAL;
	}
	json_array_foreach(v, i, s) {
		const char *t = json_string_value(s);
		char sub[64];

		snprintf(sub, sizeof(sub), "%s[%zu]", field, i);
		if (!t || strlen(t) != json_string_length(s) || json_string_length(s) > MAX_STRING) {
			schema_error(e, sub, "must be a string without NUL bytes, at most %d bytes", MAX_STRING);
			return -EINVAL;
		}
		if (env && (!strchr(t, '=') || t[0] == '=')) {
			schema_error(e, sub, "must be NAME=value");
			return -EINVAL;
		}
		if (strv_extend(&l, t) < 0)
			return -ENOMEM;
	}
	/* An empty array is there, and says "nothing" (Cmd: []). */
	if (!l) {
		l = calloc(1, sizeof(char *));
		if (!l)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(l);
	return 0;
}

static int check_schema_version(json_t *j, const char *what, struct schema_errors *e)
{
	json_t *v = json_object_get(j, "schemaVersion");

	if (!json_is_integer(v) || json_integer_value(v) != 2) {
		schema_error(e, what, "schemaVersion: must be 2");
		return -EINVAL;
	}
	return 0;
}

static int get_digest(json_t *obj, const char *field, char **ret, struct schema_errors *e)
{
	char sub[64];
	const char *d;

	snprintf(sub, sizeof(sub), "%s.digest", field);
	d = get_string(obj, "digest", sub, true, e);
	if (!d)
		return -EINVAL;
	if (!oci_digest_valid(d)) {
		schema_error(e, sub, "must be sha256:<64 lowercase hex digits>");
		return -EINVAL;
	}
	*ret = strdup(d);
	return *ret ? 0 : -ENOMEM;
}

static int get_size(json_t *obj, const char *field, uint64_t *ret, struct schema_errors *e)
{
	json_t *v = json_object_get(obj, "size");
	char sub[64];

	snprintf(sub, sizeof(sub), "%s.size", field);
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		schema_error(e, sub, "must be a non-negative integer");
		return -EINVAL;
	}
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

int oci_parse_index(const char *json, size_t n, const char *ref, char **ret_manifest, struct schema_errors *e)
{
	_cleanup_(json_decrefp) json_t *j = load(json, n, "index.json", e);
	json_t *ms, *m;
	const char *found = NULL;
	size_t i, matches = 0;

	if (!j)
		return -EINVAL;
	if (!json_is_object(j)) {
		schema_error(e, "index.json", "must be an object");
		return -EINVAL;
	}
	if (check_schema_version(j, "index.json", e) < 0)
		return -EINVAL;
	ms = json_object_get(j, "manifests");
	if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > MAX_STRINGS) {
		schema_error(e, "manifests", "must be a non-empty array");
		return -EINVAL;
	}
	json_array_foreach(ms, i, m) {
		char field[48];
		const char *mt, *name;
		json_t *ann;

		snprintf(field, sizeof(field), "manifests[%zu]", i);
		if (!json_is_object(m)) {
			schema_error(e, field, "must be an object");
			return -EINVAL;
		}
		mt = get_string(m, "mediaType", field, true, e);
		if (!mt)
			return -EINVAL;
		if (streq(mt, MT_INDEX)) {
			schema_error(e, field, "a nested index; give the reference of an image manifest");
			return -EINVAL;
		}
		if (!streq(mt, MT_MANIFEST))
			continue; /* other artifacts: not images */
		ann = json_object_get(m, "annotations");
		name = json_is_object(ann) ? json_string_value(json_object_get(ann, REF_NAME)) : NULL;
		if (ref && (!name || !streq(name, ref)))
			continue;
		if (!oci_digest_valid(json_string_value(json_object_get(m, "digest")))) {
			schema_error(e, field, "digest: must be sha256:<64 lowercase hex digits>");
			return -EINVAL;
		}
		found = json_string_value(json_object_get(m, "digest"));
		matches++;
	}
	if (matches == 0) {
		if (ref)
			schema_error(e, "manifests", "no image manifest named %s", ref);
		else
			schema_error(e, "manifests", "no image manifest");
		return -ENOENT;
	}
	if (matches > 1) {
		schema_error(e, "manifests", "%zu image manifests%s%s; name one", matches, ref ? " named " : "",
			     ref ? ref : "");
		return -EINVAL;
	}
	*ret_manifest = strdup(found);
	return *ret_manifest ? 0 : -ENOMEM;
}

static int layer_type(const char *mt, enum oci_compression *ret)
{
	for (size_t i = 0; i < ELEMENTSOF(layer_types); i++)
		if (streq(mt, layer_types[i].type)) {
			*ret = layer_types[i].compression;
			return 0;
		}
	return -EINVAL;
}

int oci_parse_manifest(const char *json, size_t n, struct oci_image *img, struct schema_errors *e)
{
	_cleanup_(json_decrefp) json_t *j = load(json, n, "manifest", e);
	json_t *cfg, *layers, *l;
	const char *mt;
	size_t i;
	int r;

	if (!j)
		return -EINVAL;
	if (!json_is_object(j)) {
		schema_error(e, "manifest", "must be an object");
		return -EINVAL;
	}
	if (check_schema_version(j, "manifest", e) < 0)
		return -EINVAL;
	mt = json_string_value(json_object_get(j, "mediaType"));
	if (mt && !streq(mt, MT_MANIFEST)) {
		schema_error(e, "mediaType", "must be %s", MT_MANIFEST);
		return -EINVAL;
	}
	cfg = json_object_get(j, "config");
	if (!json_is_object(cfg)) {
		schema_error(e, "config", "required, an object");
		return -EINVAL;
	}
	mt = get_string(cfg, "mediaType", "config.mediaType", true, e);
	if (!mt)
		return -EINVAL;
	if (!streq(mt, MT_CONFIG)) {
		schema_error(e, "config.mediaType", "must be %s (not a container image?)", MT_CONFIG);
		return -EINVAL;
	}
	r = get_digest(cfg, "config", &img->config_digest, e);
	if (r == 0)
		r = get_size(cfg, "config", &img->config_size, e);
	if (r < 0)
		return r;
	layers = json_object_get(j, "layers");
	if (!json_is_array(layers) || json_array_size(layers) > OCI_MAX_LAYERS) {
		schema_error(e, "layers", "must be an array of at most %d layers", OCI_MAX_LAYERS);
		return -EINVAL;
	}
	img->layers = calloc(json_array_size(layers) + 1, sizeof(*img->layers));
	if (!img->layers)
		return -ENOMEM;
	json_array_foreach(layers, i, l) {
		struct oci_layer *ol = &img->layers[i];
		char field[32], sub[48];

		snprintf(field, sizeof(field), "layers[%zu]", i);
		if (!json_is_object(l)) {
			schema_error(e, field, "must be an object");
			return -EINVAL;
		}
		snprintf(sub, sizeof(sub), "%s.mediaType", field);
		mt = get_string(l, "mediaType", sub, true, e);
		if (!mt)
			return -EINVAL;
		if (layer_type(mt, &ol->compression) < 0) {
			schema_error(e, sub, "%.100s: not a layer vmd can unpack (tar, tar+gzip, tar+zstd)", mt);
			return -EINVAL;
		}
		img->n_layers = i + 1;
		r = get_digest(l, field, &ol->digest, e);
		if (r == 0)
			r = get_size(l, field, &ol->size, e);
		if (r < 0)
			return r;
	}
	return 0;
}

static bool valid_signal(const char *s)
{
	if (!*s || strlen(s) > 16)
		return false;
	for (const char *p = s; *p; p++)
		if (!isupper((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '+' && *p != '-')
			return false;
	return true;
}

static int get_diff_ids(json_t *j, struct oci_image *img, struct schema_errors *e)
{
	json_t *rootfs = json_object_get(j, "rootfs"), *ids, *d;
	_cleanup_strv_free_ char **l = NULL;
	const char *type;
	size_t i;

	if (!rootfs || json_is_null(rootfs))
		return 0;
	if (!json_is_object(rootfs)) {
		schema_error(e, "config.rootfs", "must be an object");
		return -EINVAL;
	}
	ids = json_object_get(rootfs, "diff_ids");
	if (!ids || json_is_null(ids))
		return 0;
	type = json_string_value(json_object_get(rootfs, "type"));
	if (!type || !streq(type, "layers")) {
		schema_error(e, "config.rootfs.type", "must be \"layers\"");
		return -EINVAL;
	}
	if (!json_is_array(ids) || json_array_size(ids) > OCI_MAX_LAYERS) {
		schema_error(e, "config.rootfs.diff_ids", "must be an array of at most %d digests", OCI_MAX_LAYERS);
		return -EINVAL;
	}
	json_array_foreach(ids, i, d) {
		if (!oci_digest_valid(json_string_value(d))) {
			schema_error(e, "config.rootfs.diff_ids", "[%zu]: must be sha256:<64 lowercase hex digits>", i);
			return -EINVAL;
		}
		if (strv_extend(&l, json_string_value(d)) < 0)
			return -ENOMEM;
	}
	if (!l) {
		l = calloc(1, sizeof(char *));
		if (!l)
			return -ENOMEM;
	}
	img->n_diff_ids = json_array_size(ids);
	img->diff_ids = TAKE_PTR(l);
	return 0;
}

int oci_check_diff_ids(const struct oci_image *img, bool required, struct schema_errors *e)
{
	if (!img->diff_ids) {
		if (!required)
			return 0;
		schema_error(e, "config.rootfs.diff_ids", "required (one digest per layer)");
		return -EINVAL;
	}
	if (img->n_diff_ids != img->n_layers) {
		schema_error(e, "config.rootfs.diff_ids", "%zu digests for %zu layers", img->n_diff_ids, img->n_layers);
		return -EINVAL;
	}
	return 0;
}

int oci_parse_config(const char *json, size_t n, struct oci_image *img, struct schema_errors *e)
{
	_cleanup_(json_decrefp) json_t *j = load(json, n, "config", e);
	struct oci_run *run = &img->run;
	size_t before = e->n;
	json_t *c;
	int r = 0;

	if (!j)
		return -EINVAL;
	if (!json_is_object(j)) {
		schema_error(e, "config", "must be an object");
		return -EINVAL;
	}
	r = get_diff_ids(j, img, e);
	if (r < 0)
		return r;
	c = json_object_get(j, "config");
	if (!c || json_is_null(c))
		return 0; /* nothing said: vmd's and the definition's defaults */
	if (!json_is_object(c)) {
		schema_error(e, "config.config", "must be an object");
		return -EINVAL;
	}
	if (r >= 0)
		r = get_strv(c, "Entrypoint", "config.Entrypoint", false, &run->entrypoint, e);
	if (r >= 0)
		r = get_strv(c, "Cmd", "config.Cmd", false, &run->cmd, e);
	if (r >= 0)
		r = get_strv(c, "Env", "config.Env", true, &run->env, e);
	if (r >= 0)
		r = dup_string(c, "WorkingDir", "config.WorkingDir", false, &run->workdir, e);
	if (r >= 0)
		r = dup_string(c, "User", "config.User", false, &run->user, e);
	if (r >= 0)
		r = dup_string(c, "StopSignal", "config.StopSignal", false, &run->stop_signal, e);
	if (r < 0)
		return r;
	if (run->workdir && *run->workdir && run->workdir[0] != '/')
		schema_error(e, "config.WorkingDir", "must be an absolute path");
	if (run->stop_signal && !valid_signal(run->stop_signal))
		schema_error(e, "config.StopSignal", "must be a signal name (SIGTERM) or number");
	return e->n > before ? -EINVAL : 0;
}

/* A path inside a docker-archive: relative, no "." or ".." component, no
 * empty one, printable. */
static bool archive_path_valid(const char *p)
{
	if (!*p || *p == '/' || strlen(p) > 1024)
		return false;
	for (const char *c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return false;
	for (const char *s = p; s;) {
		const char *slash = strchr(s, '/');
		size_t len = slash ? (size_t)(slash - s) : strlen(s);

		if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s = slash ? slash + 1 : NULL;
	}
	return true;
}

static bool has_tag(json_t *tags, const char *ref)
{
	json_t *t;
	size_t i;

	json_array_foreach(tags, i, t)
		if (json_is_string(t) && streq(json_string_value(t), ref))
			return true;
	return false;
}

int oci_parse_docker_manifest(const char *json, size_t n, const char *ref, struct oci_image *img,
			      struct schema_errors *e)
{
	_cleanup_(json_decrefp) json_t *j = load(json, n, "manifest.json", e);
	json_t *entry = NULL, *x, *layers, *l;
	size_t i, matches = 0;
	const char *cfg;

	if (!j)
		return -EINVAL;
	if (!json_is_array(j) || json_array_size(j) == 0 || json_array_size(j) > MAX_STRINGS) {
		schema_error(e, "manifest.json", "must be a non-empty array");
		return -EINVAL;
	}
	json_array_foreach(j, i, x) {
		if (!json_is_object(x)) {
			schema_error(e, "manifest.json", "[%zu]: must be an object", i);
			return -EINVAL;
		}
		if (ref && !has_tag(json_object_get(x, "RepoTags"), ref))
			continue;
		entry = x;
		matches++;
	}
	if (matches == 0) {
		schema_error(e, "manifest.json", "no image%s%s", ref ? " tagged " : "", ref ? ref : "");
		return -ENOENT;
	}
	if (matches > 1) {
		schema_error(e, "manifest.json", "%zu images%s%s; name one", matches, ref ? " tagged " : "",
			     ref ? ref : "");
		return -EINVAL;
	}
	cfg = get_string(entry, "Config", "Config", true, e);
	if (!cfg)
		return -EINVAL;
	if (!archive_path_valid(cfg)) {
		schema_error(e, "Config", "%.200s: must be a relative path inside the archive", cfg);
		return -EINVAL;
	}
	img->config_path = strdup(cfg);
	if (!img->config_path)
		return -ENOMEM;
	layers = json_object_get(entry, "Layers");
	if (!json_is_array(layers) || json_array_size(layers) > OCI_MAX_LAYERS) {
		schema_error(e, "Layers", "must be an array of at most %d paths", OCI_MAX_LAYERS);
		return -EINVAL;
	}
	img->layers = calloc(json_array_size(layers) + 1, sizeof(*img->layers));
	if (!img->layers)
		return -ENOMEM;
	json_array_foreach(layers, i, l) {
		const char *p = json_string_value(l);

		if (!p || strlen(p) != json_string_length(l) || !archive_path_valid(p)) {
			schema_error(e, "Layers", "[%zu]: must be a relative path inside the archive", i);
			return -EINVAL;
		}
		/* Compressed or not, the unpacker tells by content. */
		img->layers[i].path = strdup(p);
		if (!img->layers[i].path)
			return -ENOMEM;
		img->layers[i].compression = OCI_LAYER_TAR;
		img->n_layers = i + 1;
	}
	return 0;
}
