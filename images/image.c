/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "beneath.h"
#include "image.h"
#include "unpack.h"

#define TMP_PREFIX ".tmp-"
/* image.json: what vmd writes, the config compact and at most
 * OCI_MAX_JSON as read (re-dumped, a number may come out longer: a config
 * that does not fit is not kept, and its archive is read again). */
#define ENTRY_JSON_MAX (2 * OCI_MAX_JSON + 64 * 1024)

static const char *const kind_names[] = { "layout", "docker-archive" };

void image_info_clear(struct image_info *i)
{
	free(i->key);
	oci_run_clear(&i->run);
	*i = (struct image_info){};
}

void image_cached_clear(struct image_cached *c)
{
	safe_close(c->lock_fd);
	free(c->key);
	free(c->rootfs);
	oci_run_clear(&c->run);
	*c = (struct image_cached){ .lock_fd = -EBADF };
}

char *image_cached_summary(const struct image_cached *c, bool unpacked, uint64_t took_usec)
{
	if (!unpacked)
		return xasprintf("image %s: cached", c->key);
	return xasprintf("image %s: unpacked %.1f MiB in %.2f s", c->key, (double)c->bytes / (1 << 20),
			 (double)took_usec / 1000000);
}

void image_cache_entries_free(struct image_cache_entry *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].source);
		free(l[i].ref);
	}
	free(l);
}

static bool key_valid(const char *k)
{
	char d[IMAGE_KEY_LEN + 1];

	if (!startswith(k, "sha256-") || strlen(k) != IMAGE_KEY_LEN)
		return false;
	snprintf(d, sizeof(d), "sha256:%s", k + 7);
	return oci_digest_valid(d);
}

static void sha256_hex(const void *data, size_t n, char hex[static 65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, data, n);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

/* The cache directory itself: a host setting, opened as it is, but not
 * through a symlink at its last component. */
static int cache_open(const char *dir, bool create)
{
	int fd;

	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Removes dirfd/name and all below it; symlinks in it are removed, never
 * followed (rm_rf_children() opens each directory O_NOFOLLOW). */
static int rm_tree_at(int dirfd, const char *name)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int r;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	r = rm_rf_children(fd);
	if (r < 0)
		return r;
	return unlinkat(dirfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/* A .tmp- name for key's entry, unique. */
static void tmp_name(const char *key, char buf[static 96])
{
	unsigned char rnd[8];
	char hex[17];

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(buf, 96, TMP_PREFIX "%s-%s", key + 7, hex);
}

/* Renames the entry out of the way (a crash then leaves a partial), then
 * deletes it. */
static int remove_entry(int cfd, const char *key)
{
	char tmp[96];

	tmp_name(key, tmp);
	if (renameat(cfd, key, cfd, tmp) < 0)
		return -errno;
	return rm_tree_at(cfd, tmp);
}

static int remove_stale(int cfd)
{
	DIR *d;
	struct dirent *de;
	int fd = openat(cfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (startswith(de->d_name, TMP_PREFIX)) {
			int q = rm_tree_at(cfd, de->d_name);

			if (q < 0)
				r = q;
		}
	closedir(d);
	return r;
}

/* image.json of a complete entry. */
struct entry_json {
	char *source, *ref;
	enum image_kind kind;
	uint64_t bytes;
	int setuid;   /* unpacked with allow_setuid: 1 or 0; -1: not recorded */
	char *config; /* the image config, as JSON text; NULL: not kept */
};

static void entry_json_clear(struct entry_json *j)
{
	free(j->source);
	free(j->ref);
	free(j->config);
	*j = (struct entry_json){};
}

static int entry_read(int cfd, const char *key, struct entry_json *ret)
{
	_cleanup_free_ char *name = xasprintf("%s/image.json", key), *text = NULL;
	_cleanup_(json_decrefp) json_t *j = NULL;
	const char *source, *ref, *kind;
	json_t *bytes, *config, *setuid;
	size_t n;
	int r;

	if (!name)
		return -ENOMEM;
	r = read_beneath(cfd, name, ENTRY_JSON_MAX, &text, &n);
	if (r < 0)
		return r;
	j = json_loadb(text, n, 0, NULL);
	source = json_string_value(json_object_get(j, "source"));
	ref = json_string_value(json_object_get(j, "ref"));
	kind = json_string_value(json_object_get(j, "kind"));
	bytes = json_object_get(j, "bytes");
	config = json_object_get(j, "config");
	setuid = json_object_get(j, "setuid");
	if (!source || !kind || !json_is_integer(bytes) || json_integer_value(bytes) < 0 ||
	    (!streq(kind, kind_names[IMAGE_LAYOUT]) && !streq(kind, kind_names[IMAGE_DOCKER_ARCHIVE])))
		return -EBADMSG;
	*ret = (struct entry_json){
		.source = strdup(source),
		.ref = ref ? strdup(ref) : NULL,
		.kind = streq(kind, kind_names[IMAGE_DOCKER_ARCHIVE]) ? IMAGE_DOCKER_ARCHIVE : IMAGE_LAYOUT,
		.bytes = (uint64_t)json_integer_value(bytes),
		.setuid = json_is_boolean(setuid) ? json_is_true(setuid) : -1,
		.config = json_is_object(config) ? json_dumps(config, JSON_COMPACT) : NULL,
	};
	if (!ret->source || (ref && !ret->ref) || (json_is_object(config) && !ret->config)) {
		entry_json_clear(ret);
		return -ENOMEM;
	}
	return 0;
}

/* The image being read, in either form. */
struct probe {
	enum image_kind kind;
	struct oci_image img;
	int dirfd; /* layout */
	int fd;    /* docker-archive */
	char fingerprint[65];
	char *config; /* docker-archive: the config file */
	size_t config_n;
	char *key;
	bool complete;
	bool fingerprinted; /* complete, found by its fingerprint */
	bool other_kind;    /* the entry at key was unpacked from the other kind */
	uint64_t bytes;     /* complete: from image.json */
	int setuid;         /* complete: from image.json */
};

static void probe_clear(struct probe *p)
{
	oci_image_clear(&p->img);
	safe_close(p->dirfd);
	safe_close(p->fd);
	free(p->config);
	free(p->key);
	*p = (struct probe){ .dirfd = -EBADF, .fd = -EBADF };
}

static const char *clean_member(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	return p;
}

/* The outer archive of a docker-archive, from its start. */
static struct archive *outer_open(int fd, const char *path, struct schema_errors *e)
{
	struct archive *a;

	if (lseek(fd, 0, SEEK_SET) < 0) {
		schema_error(e, "image", "%s: %s", path, strerror(errno));
		return NULL;
	}
	a = archive_read_new();
	if (!a)
		return NULL;
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_fd(a, fd, 64 * 1024) != ARCHIVE_OK) {
		schema_error(e, "image", "%s: not an OCI layout directory or a docker-archive (tar, tar.gz, tar.zst): %s",
			     path, archive_error_string(a));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive *, archive_read_free)

/* Small .json files seen on the way to manifest.json: the config is one
 * of them in what dockerTools and docker save (before 25) write, and then
 * costs no second pass over a compressed archive. */
#define SIDE_MAX 8
#define SIDE_BYTES (16 * 1024 * 1024)
struct side {
	char *name[SIDE_MAX], *data[SIDE_MAX];
	size_t n[SIDE_MAX], count, bytes;
};

static void side_clear(struct side *s)
{
	for (size_t i = 0; i < s->count; i++) {
		free(s->name[i]);
		free(s->data[i]);
	}
	*s = (struct side){};
}

static char *entry_data(struct archive *a, int64_t size)
{
	_cleanup_free_ char *buf = malloc((size_t)size + 1);

	if (!buf || archive_read_data(a, buf, (size_t)size) != size)
		return NULL;
	buf[size] = 0;
	return TAKE_PTR(buf);
}

static bool side_keep(struct side *s, struct archive *a, const char *name, int64_t size)
{
	size_t len = strlen(name);

	if (!s || s->count == SIDE_MAX || size > OCI_MAX_JSON || s->bytes + (uint64_t)size > SIDE_BYTES ||
	    len < 5 || !streq(name + len - 5, ".json"))
		return false;
	s->data[s->count] = entry_data(a, size);
	s->name[s->count] = strdup(name);
	if (!s->data[s->count] || !s->name[s->count]) {
		free(s->data[s->count]);
		free(s->name[s->count]);
		return false;
	}
	s->n[s->count++] = (size_t)size;
	s->bytes += (uint64_t)size;
	return true;
}

static bool side_take(struct side *s, const char *name, char **ret, size_t *ret_n)
{
	for (size_t i = 0; s && i < s->count; i++)
		if (s->data[i] && streq(s->name[i], name)) {
			*ret = TAKE_PTR(s->data[i]);
			*ret_n = s->n[i];
			return true;
		}
	return false;
}

/* One small file of the archive, whole; side (NULL: none) keeps small
 * .json files met before it. */
static int read_member(int fd, const char *path, const char *name, struct side *side, char **ret, size_t *ret_n,
		       struct schema_errors *e)
{
	_cleanup_(archive_read_freep) struct archive *a = outer_open(fd, path, e);
	struct archive_entry *entry;
	int k;

	if (!a)
		return -EINVAL;
	while ((k = archive_read_next_header(a, &entry)) == ARCHIVE_OK || k == ARCHIVE_WARN) {
		const char *member = archive_entry_pathname(entry);
		int64_t size = archive_entry_size(entry);
		bool regular = archive_entry_filetype(entry) == AE_IFREG && !archive_entry_hardlink(entry);

		if (!member || size < 0)
			continue;
		member = clean_member(member);
		if (!streq(member, name)) {
			if (regular)
				(void)side_keep(side, a, member, size);
			continue;
		}
		if (!regular) {
			schema_error(e, name, "not a regular file in the archive");
			return -EINVAL;
		}
		if (size > OCI_MAX_JSON) {
			schema_error(e, name, "larger than %d bytes", OCI_MAX_JSON);
			return -EFBIG;
		}
		*ret = entry_data(a, size);
		if (!*ret) {
			schema_error(e, name, "cannot read it: %s", archive_error_string(a) ?: "truncated");
			return -EIO;
		}
		*ret_n = (size_t)size;
		return 0;
	}
	if (k != ARCHIVE_EOF) {
		schema_error(e, "image", "%s: %s", path, archive_error_string(a));
		return -EIO;
	}
	schema_error(e, name, "not in the archive");
	return -ENOENT;
}

/* sources/<hex>: what identifies this archive file as it is now. */
static void fingerprint(const struct stat *st, const char *path, const char *ref, char hex[static 65])
{
	_cleanup_free_ char *s = xasprintf("%ju %ju %jd %jd %jd %s\n%s", (uintmax_t)st->st_dev, (uintmax_t)st->st_ino,
					   (intmax_t)st->st_size,
					   (intmax_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
					   (intmax_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec, path,
					   ref ? ref : "");

	sha256_hex(s ? s : "", s ? strlen(s) : 0, hex);
}

/* A cached docker-archive: the fingerprint names a complete entry, whose
 * image.json keeps the config. */
static int probe_cached_archive(struct probe *p, int cfd)
{
	_cleanup_free_ char *name = xasprintf("sources/%s", p->fingerprint), *key = NULL;
	struct entry_json j = {};
	struct schema_errors quiet = {};
	int r;

	if (!name)
		return -ENOMEM;
	r = read_beneath(cfd, name, 128, &key, NULL);
	if (r < 0)
		return r;
	key[strcspn(key, "\n")] = 0;
	if (!key_valid(key))
		return -EBADMSG;
	r = entry_read(cfd, key, &j);
	if (r < 0)
		return r;
	if (!j.config || j.kind != IMAGE_DOCKER_ARCHIVE) {
		entry_json_clear(&j);
		return -EBADMSG;
	}
	/* Written by vmd, parsed before: should it not parse now, the
	 * archive is read instead. */
	r = oci_parse_config(j.config, strlen(j.config), &p->img, &quiet);
	schema_errors_clear(&quiet);
	if (r < 0) {
		entry_json_clear(&j);
		return r;
	}
	p->config = TAKE_PTR(j.config);
	p->config_n = strlen(p->config);
	p->bytes = j.bytes;
	p->setuid = j.setuid;
	p->key = TAKE_PTR(key);
	p->complete = p->fingerprinted = true;
	entry_json_clear(&j);
	return 0;
}

/* cached_only: an archive the cache does not know is not read (a
 * compressed one is decompressed up to its manifest, near the end): -EAGAIN. */
static int probe_archive(struct probe *p, const char *path, const char *ref, int cfd, bool cached_only,
			 struct schema_errors *e)
{
	_cleanup_free_ char *manifest = NULL;
	_cleanup_(side_clear) struct side side = {};
	char hex[65];
	struct stat st;
	size_t n;
	int r;

	p->kind = IMAGE_DOCKER_ARCHIVE;
	p->fd = open_regular(path, O_RDONLY, 0);
	if (p->fd < 0 || fstat(p->fd, &st) < 0) {
		schema_error(e, "image", "%s: %s", path, strerror(p->fd < 0 ? -p->fd : errno));
		return p->fd < 0 ? p->fd : -errno;
	}
	fingerprint(&st, path, ref, p->fingerprint);
	if (cfd >= 0 && probe_cached_archive(p, cfd) == 0)
		return 0;
	if (cached_only)
		return -EAGAIN;
	oci_image_clear(&p->img);
	r = read_member(p->fd, path, "manifest.json", &side, &manifest, &n, e);
	if (r == 0)
		r = oci_parse_docker_manifest(manifest, n, ref, &p->img, e);
	if (r == 0 && !side_take(&side, p->img.config_path, &p->config, &p->config_n))
		r = read_member(p->fd, path, p->img.config_path, NULL, &p->config, &p->config_n, e);
	if (r == 0)
		r = oci_parse_config(p->config, p->config_n, &p->img, e);
	/* What a docker-archive's layers are checked against. */
	if (r == 0)
		r = oci_check_diff_ids(&p->img, true, e);
	if (r < 0)
		return r;
	sha256_hex(p->config, p->config_n, hex);
	p->key = xasprintf("sha256-%s", hex);
	return p->key ? 0 : -ENOMEM;
}

static int probe_image(struct probe *p, const char *path, const char *ref, int cfd, bool cached_only,
		       struct schema_errors *e)
{
	struct stat st;
	int r;

	*p = (struct probe){ .dirfd = -EBADF, .fd = -EBADF };
	if (sodium_init() < 0)
		return -EIO;
	if (stat(path, &st) < 0) {
		schema_error(e, "image", "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISREG(st.st_mode))
		r = probe_archive(p, path, ref, cfd, cached_only, e);
	else if (S_ISDIR(st.st_mode)) {
		p->kind = IMAGE_LAYOUT;
		r = oci_load_layout(path, ref, &p->img, e);
		if (r < 0)
			return r;
		p->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (p->dirfd < 0) {
			schema_error(e, "image", "%s: %s", path, strerror(errno));
			return -errno;
		}
		p->key = xasprintf("sha256-%s", p->img.manifest_digest + 7);
		r = p->key ? 0 : -ENOMEM;
	} else {
		schema_error(e, "image", "%s: not an OCI layout directory or a docker-archive file", path);
		return -EINVAL;
	}
	if (r < 0 || p->complete || cfd < 0)
		return r;
	{
		struct entry_json j = {};

		/* One key for a manifest and a config (a text that parses as
		 * both): not the same image. */
		if (entry_read(cfd, p->key, &j) == 0) {
			p->other_kind = j.kind != p->kind;
			p->complete = !p->other_kind;
			p->bytes = j.bytes;
			p->setuid = j.setuid;
		}
		entry_json_clear(&j);
	}
	return 0;
}

int image_inspect(const char *path, const char *ref, const char *cache_dir, struct image_info *ret,
		  struct schema_errors *e)
{
	_cleanup_close_ int cfd = cache_dir ? cache_open(cache_dir, false) : -EBADF;
	_cleanup_(probe_clear) struct probe p = { .dirfd = -EBADF, .fd = -EBADF };
	int r;

	*ret = (struct image_info){};
	r = probe_image(&p, path, ref, cfd, false, e);
	if (r < 0)
		return r;
	*ret = (struct image_info){
		.key = TAKE_PTR(p.key),
		.kind = p.kind,
		.run = p.img.run,
		.complete = p.complete,
	};
	p.img.run = (struct oci_run){};
	return 0;
}

/* A layer of a docker-archive, copied out of the archive into an unnamed
 * file below the partial entry (read twice by the unpacker, a compressed
 * archive is decompressed once) and checked against its diff_id. */
static int copy_layer(struct archive *a, int tfd, const char *name, uint64_t *budget, char hex[static 65],
		      struct schema_errors *e)
{
	_cleanup_close_ int fd = openat(tfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	crypto_hash_sha256_state st;
	unsigned char h[crypto_hash_sha256_BYTES];
	char buf[64 * 1024];
	la_ssize_t k;

	if (fd < 0)
		return -errno;
	crypto_hash_sha256_init(&st);
	while ((k = archive_read_data(a, buf, sizeof(buf))) > 0) {
		if ((uint64_t)k > *budget) {
			schema_error(e, name, "the layers are larger than the image size limit allows (refused)");
			return -EFBIG;
		}
		*budget -= (uint64_t)k;
		crypto_hash_sha256_update(&st, (unsigned char *)buf, (unsigned long long)k);
		if (write_all(fd, buf, (size_t)k) < 0)
			return -errno;
	}
	if (k < 0) {
		schema_error(e, name, "cannot read it: %s", archive_error_string(a));
		return -EIO;
	}
	crypto_hash_sha256_final(&st, h);
	sodium_bin2hex(hex, 65, h, sizeof(h));
	return TAKE_FD(fd);
}

/* A symlink's target inside the archive, as a member name: dir/target
 * with "." and ".." resolved; NULL if it leaves the archive. */
static char *member_link(const char *name, const char *target)
{
	_cleanup_free_ char *joined = NULL, *out = NULL;
	const char *slash = strrchr(name, '/');
	size_t n = 0;

	if (!target || target[0] == '/')
		return NULL;
	joined = xasprintf("%.*s%s", slash ? (int)(slash - name + 1) : 0, name, target);
	out = joined ? malloc(strlen(joined) + 1) : NULL;
	if (!out)
		return NULL;
	for (char *save = NULL, *c = strtok_r(joined, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (streq(c, "."))
			continue;
		if (streq(c, "..")) {
			if (n == 0)
				return NULL;
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			continue;
		}
		n += (size_t)sprintf(out + n, "%s%s", n ? "/" : "", c);
	}
	out[n] = 0;
	return n ? TAKE_PTR(out) : NULL;
}

/* Layer i is fd's content, whose sha256 is hex: if its diff_id says so. */
static int layer_found(struct probe *p, size_t i, int fd, const char *hex, const char *name, int *fds,
		       struct schema_errors *e)
{
	char field[96];

	fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (fds[i] < 0)
		return -errno;
	if (!streq(p->img.diff_ids[i] + 7, hex)) {
		snprintf(field, sizeof(field), "layer %zu (%s)", i + 1, p->img.diff_ids[i]);
		schema_error(e, field, "%s: its content does not match its diff_id (sha256)", name);
		return -EBADMSG;
	}
	return 0;
}

/* Per layer, the member its symlink names (NULL: none, yet). */
struct aliases {
	char **v;
	size_t n;
};

static void aliases_free(struct aliases *a)
{
	for (size_t i = 0; a->v && i < a->n; i++)
		free(a->v[i]);
	free(a->v);
}

/* The layers copied out in one pass over the archive. docker save (before
 * 25) writes a layer that is there twice as a symlink to the other. */
static int archive_layers(struct probe *p, const char *path, int tfd, uint64_t max_bytes, int *fds,
			  struct schema_errors *e)
{
	_cleanup_(archive_read_freep) struct archive *a = outer_open(p->fd, path, e);
	_cleanup_(aliases_free) struct aliases al = { calloc(p->img.n_layers + 1, sizeof(char *)), p->img.n_layers };
	char **alias = al.v;
	_cleanup_free_ char(*hex)[65] = calloc(p->img.n_layers + 1, sizeof(*hex));
	/* A tar holds its content and, per entry, a header and padding. */
	uint64_t budget = 2 * max_bytes + (256ULL << 20);
	struct archive_entry *entry;
	int k, r;

	if (!a || !alias || !hex)
		return a ? -ENOMEM : -EINVAL;
	while ((k = archive_read_next_header(a, &entry)) == ARCHIVE_OK || k == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(entry);
		_cleanup_close_ int fd = -EBADF;
		size_t i, first = SIZE_MAX;

		name = name ? clean_member(name) : "";
		for (i = 0; i < p->img.n_layers && first == SIZE_MAX; i++)
			if (fds[i] < 0 && !alias[i] && streq(p->img.layers[i].path, name))
				first = i;
		if (first == SIZE_MAX)
			continue;
		if (archive_entry_filetype(entry) == AE_IFLNK && !archive_entry_hardlink(entry)) {
			char *t = member_link(name, archive_entry_symlink(entry));

			if (!t) {
				schema_error(e, name, "a symlink out of the archive");
				return -EINVAL;
			}
			free(alias[first]);
			alias[first] = t;
			continue;
		}
		if (archive_entry_filetype(entry) != AE_IFREG || archive_entry_hardlink(entry)) {
			schema_error(e, name, "not a regular file in the archive");
			return -EINVAL;
		}
		fd = copy_layer(a, tfd, name, &budget, hex[first], e);
		if (fd < 0)
			return fd;
		for (i = first; i < p->img.n_layers; i++) {
			if (fds[i] >= 0 || !streq(p->img.layers[i].path, name))
				continue;
			if (i != first)
				memcpy(hex[i], hex[first], sizeof(hex[i]));
			r = layer_found(p, i, fd, hex[i], name, fds, e);
			if (r < 0)
				return r;
		}
	}
	if (k != ARCHIVE_EOF) {
		schema_error(e, "image", "%s: %s", path, archive_error_string(a));
		return -EIO;
	}
	for (size_t i = 0; i < p->img.n_layers; i++) {
		const char *name = p->img.layers[i].path;

		if (fds[i] >= 0)
			continue;
		for (size_t j = 0; alias[i] && j < p->img.n_layers; j++)
			if (fds[j] >= 0 && streq(p->img.layers[j].path, alias[i])) {
				r = layer_found(p, i, fds[j], hex[j], name, fds, e);
				if (r < 0)
					return r;
				memcpy(hex[i], hex[j], sizeof(hex[i]));
				break;
			}
		/* Several listings of one symlink: each one its own. */
		for (size_t j = i + 1; fds[i] >= 0 && j < p->img.n_layers; j++) {
			if (fds[j] >= 0 || !streq(p->img.layers[j].path, name))
				continue;
			r = layer_found(p, j, fds[i], hex[i], name, fds, e);
			if (r < 0)
				return r;
			memcpy(hex[j], hex[i], sizeof(hex[j]));
		}
		if (fds[i] < 0) {
			if (alias[i])
				schema_error(e, "Layers", "[%zu]: %s: a symlink to %s, which is not another layer", i, name,
					     alias[i]);
			else
				schema_error(e, "Layers", "[%zu]: %s: not in the archive", i, name);
			return -ENOENT;
		}
	}
	return 0;
}

static int layout_layers(struct probe *p, int *fds, struct schema_errors *e)
{
	for (size_t i = 0; i < p->img.n_layers; i++) {
		char name[96];
		struct stat st;

		snprintf(name, sizeof(name), "blobs/sha256/%s", p->img.layers[i].digest + 7);
		fds[i] = open_beneath(p->dirfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
		if (fds[i] < 0) {
			schema_error(e, name, "%s", fds[i] == -ELOOP ? "a symlink (refused)" : strerror(-fds[i]));
			return fds[i];
		}
		if (fstat(fds[i], &st) < 0)
			return -errno;
		if (!S_ISREG(st.st_mode)) {
			schema_error(e, name, "not a regular file");
			return -EBADFD;
		}
	}
	return 0;
}

static int write_entry_json(int tfd, struct probe *p, const char *path, const char *ref, uint64_t bytes,
			    bool setuid)
{
	_cleanup_(json_decrefp) json_t *config = p->config ? json_loadb(p->config, p->config_n, 0, NULL) : NULL;
	_cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s?, s:s, s:I, s:b, s:O?}", "source", path, "ref", ref,
						       "kind", kind_names[p->kind], "bytes", (json_int_t)bytes,
						       "setuid", setuid, "config", config);
	/* Compact: indenting costs each element its depth in spaces, and a
	 * deep config (small as read) came out larger than entry_read()
	 * takes, leaving an entry that is never complete. */
	_cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	if (text && strlen(text) > ENTRY_JSON_MAX) {
		text = mfree(text);
		if (json_object_del(j, "config") == 0)
			text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	}
	if (!text)
		return -ENOMEM;
	return write_file_at(tfd, "image.json", text, strlen(text), 0600, WRITE_FILE_SYNC);
}

/* A new entry: unpacked under a .tmp- name, then renamed into place. */
static int build_entry(int cfd, struct probe *p, const char *path, const char *ref,
		       const struct image_unpack_opts *opts, uint64_t *ret_bytes, struct schema_errors *e)
{
	_cleanup_close_ int tfd = -EBADF, rfd = -EBADF, lk = -EBADF;
	struct unpack_opts uo = { .allow_setuid = opts && opts->allow_setuid, .max_bytes = opts ? opts->max_bytes : 0 };
	struct unpack_layer *layers = calloc(p->img.n_layers + 1, sizeof(*layers));
	int *fds = calloc(p->img.n_layers + 1, sizeof(int));
	char tmp[96];
	int r;

	if (!layers || !fds) {
		free(layers);
		free(fds);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->img.n_layers; i++)
		fds[i] = -EBADF;
	tmp_name(p->key, tmp);
	if (mkdirat(cfd, tmp, 0700) < 0) {
		r = -errno;
		goto out;
	}
	tfd = openat(cfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	r = tfd < 0 ? -errno : 0;
	if (r == 0 && (mkdirat(tfd, "rootfs", 0755) < 0 ||
		       (rfd = openat(tfd, "rootfs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		       fchmod(rfd, 0755) < 0))
		r = -errno;
	if (r == 0)
		r = p->kind == IMAGE_LAYOUT ? layout_layers(p, fds, e)
					    : archive_layers(p, path, tfd, uo.max_bytes ? uo.max_bytes : UNPACK_DEFAULT_MAX_BYTES,
							     fds, e);
	for (size_t i = 0; r == 0 && i < p->img.n_layers; i++)
		layers[i] = (struct unpack_layer){
			.fd = fds[i],
			.digest = p->kind == IMAGE_LAYOUT ? p->img.layers[i].digest : NULL,
			.label = p->kind == IMAGE_LAYOUT ? p->img.layers[i].digest : p->img.diff_ids[i],
		};
	if (r == 0)
		r = unpack_layers(rfd, layers, p->img.n_layers, &uo, ret_bytes, e);
	if (r == 0) {
		lk = openat(tfd, "lock", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		/* The tree on disk before image.json says it is complete. */
		if (lk < 0 || syncfs(tfd) < 0)
			r = -errno;
	}
	if (r == 0)
		r = write_entry_json(tfd, p, path, ref, *ret_bytes, uo.allow_setuid);
	if (r == 0 && renameat(cfd, tmp, cfd, p->key) < 0)
		r = -errno;
	if (r == 0 && fsync(cfd) < 0)
		r = -errno;
out:
	for (size_t i = 0; i < p->img.n_layers; i++)
		safe_close(fds[i]);
	free(fds);
	free(layers);
	if (r < 0) {
		(void)rm_tree_at(cfd, tmp);
		if (!e->n)
			schema_error(e, "image", "unpacking into the cache: %s", strerror(-r));
	}
	return r;
}

static int write_fingerprint(int cfd, const struct probe *p)
{
	_cleanup_close_ int sfd = -EBADF;
	_cleanup_free_ char *text = xasprintf("%s\n", p->key);

	if (!text)
		return -ENOMEM;
	if (mkdirat(cfd, "sources", 0700) < 0 && errno != EEXIST)
		return -errno;
	sfd = openat(cfd, "sources", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return -errno;
	return write_file_at(sfd, p->fingerprint, text, strlen(text), 0600, 0);
}

static int flock_retry(int fd, int op)
{
	while (flock(fd, op) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* cache_dir/.lock, LOCK_EX: makes and removals of entries, one at a time.
 * no_wait: -EAGAIN if another holds it. */
static int cache_lock(int cfd, bool no_wait)
{
	_cleanup_close_ int fd = openat(cfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	int r;

	if (fd < 0)
		return -errno;
	r = flock_retry(fd, LOCK_EX | (no_wait ? LOCK_NB : 0));
	if (r == -EWOULDBLOCK)
		return -EAGAIN;
	return r < 0 ? r : TAKE_FD(fd);
}

/* LOCK_EX|LOCK_NB on key's lock, to remove the entry: the fd (held until
 * the entry is gone, no one can take LOCK_SH meanwhile), -ENOENT if the
 * entry has no lock, -EBUSY while someone holds LOCK_SH. */
static int entry_lock_exclusive(int cfd, const char *key)
{
	_cleanup_free_ char *name = xasprintf("%s/lock", key);
	_cleanup_close_ int fd = name ? open_beneath(cfd, name, O_RDONLY | O_NOCTTY) : -ENOMEM;

	if (fd == -ENOTDIR)
		return -ENOENT;
	if (fd < 0)
		return fd;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	return TAKE_FD(fd);
}

/* An entry that is there but not to be used as it is: removed, unless a
 * VM uses it (its tree is not deleted under it): then -EBUSY, with why. */
_printf_(4, 5) static int entry_discard(int cfd, const char *key, struct schema_errors *e, const char *busy, ...)
{
	_cleanup_close_ int held = -EBADF;
	struct stat st;
	va_list ap;
	int r;

	if (fstatat(cfd, key, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	held = entry_lock_exclusive(cfd, key);
	if (held == -EBUSY) {
		_cleanup_free_ char *why = NULL;

		va_start(ap, busy);
		why = xvasprintf(busy, ap);
		va_end(ap);
		schema_error(e, "image", "%s", why ? why : "in use");
		return -EBUSY;
	}
	r = held < 0 && held != -ENOENT ? held : 0;
	if (r == 0)
		r = remove_entry(cfd, key);
	if (r < 0)
		schema_error(e, "image cache", "removing %s: %s", key, strerror(-r));
	return r;
}

/* A complete entry unpacked under other settings than opts: *why says
 * how (NULL: none). image_setuid either way (turned off, the setuid bits
 * must go; turned on, the user wants them), image_max_mib lowered under
 * what the entry holds. */
static int entry_other_settings(const struct probe *p, const struct image_unpack_opts *opts, char **why)
{
	bool setuid = opts && opts->allow_setuid;
	uint64_t max = opts && opts->max_bytes ? opts->max_bytes : UNPACK_DEFAULT_MAX_BYTES;

	*why = NULL;
	if (!p->complete)
		return 0;
	if (p->setuid != setuid)
		*why = strdup(p->setuid < 0 ? "with no record of image_setuid"
			      : p->setuid ? "with image_setuid" : "without image_setuid");
	else if (p->bytes > max)
		*why = xasprintf("with %" PRIu64 " bytes, over image_max_mib", p->bytes);
	else
		return 0;
	return *why ? 0 : -ENOMEM;
}

int image_cache_get(const char *cache_dir, const char *path, const char *ref, const struct image_unpack_opts *opts,
		    struct image_cached *ret, struct schema_errors *e)
{
	_cleanup_close_ int cfd = -EBADF, lk = -EBADF, entry_lock = -EBADF;
	_cleanup_free_ char *lock_name = NULL, *rootfs = NULL, *why = NULL;
	_cleanup_(probe_clear) struct probe p = { .dirfd = -EBADF, .fd = -EBADF };
	bool unpacked = false, cached_only = opts && opts->cached_only;
	int r;

	*ret = (struct image_cached){ .lock_fd = -EBADF };
	cfd = cache_open(cache_dir, true);
	if (cfd < 0) {
		schema_error(e, "image cache", "%s: %s", cache_dir, strerror(-cfd));
		return cfd;
	}
	lk = cache_lock(cfd, cached_only);
	if (lk == -EAGAIN)
		return lk;
	if (lk < 0) {
		schema_error(e, "image cache", "%s/.lock: %s", cache_dir, strerror(-lk));
		return lk;
	}
	(void)remove_stale(cfd);
	r = probe_image(&p, path, ref, cfd, cached_only, e);
	if (r < 0)
		return r;
	if (p.other_kind) {
		schema_error(e, "image", "the cache entry %s was unpacked from a different kind of image", p.key);
		return -EEXIST;
	}
	r = entry_other_settings(&p, opts, &why);
	if (r < 0)
		return r;
	if (why && cached_only)
		return -EAGAIN;
	if (why) {
		/* A VM may run on it: the host's settings changed under it. */
		r = entry_discard(cfd, p.key, e, "the cache entry %s was unpacked %s; stop the VMs using it to unpack it again",
				  p.key, why);
		if (r < 0)
			return r;
		probe_clear(&p);
		/* Found by its fingerprint, an archive was not read: read now. */
		r = probe_image(&p, path, ref, -EBADF, false, e);
		if (r < 0)
			return r;
	}
	if (!p.complete && cached_only)
		return -EAGAIN;
	if (!p.complete) {
		/* There, with no image.json (or one that does not read): partial. */
		r = entry_discard(cfd, p.key, e, "the cache entry %s is in use and cannot be rebuilt", p.key);
		if (r < 0)
			return r;
		r = build_entry(cfd, &p, path, ref, opts, &p.bytes, e);
		if (r < 0)
			return r;
		unpacked = true;
	}
	/* What a cached_only get finds the entry by, without reading the
	 * archive: an error if not written, or the daemon's helper would say
	 * it is cached while cached_only goes on saying -EAGAIN. */
	if (p.kind == IMAGE_DOCKER_ARCHIVE && !p.fingerprinted) {
		r = write_fingerprint(cfd, &p);
		if (r < 0) {
			schema_error(e, "image cache", "%s/sources: %s", cache_dir, strerror(-r));
			return r;
		}
	}
	lock_name = xasprintf("%s/lock", p.key);
	rootfs = xasprintf("%s/%s/rootfs", cache_dir, p.key);
	if (!lock_name || !rootfs)
		return -ENOMEM;
	/* QEMU inherits it: read-only is all flock() needs. */
	entry_lock = open_beneath(cfd, lock_name, O_RDONLY | O_NOCTTY);
	r = entry_lock < 0 ? entry_lock : flock_retry(entry_lock, LOCK_SH);
	if (r < 0) {
		schema_error(e, "image cache", "%s/%s: %s", cache_dir, lock_name, strerror(-r));
		return r;
	}
	*ret = (struct image_cached){
		.lock_fd = TAKE_FD(entry_lock),
		.key = TAKE_PTR(p.key),
		.rootfs = TAKE_PTR(rootfs),
		.run = p.img.run,
		.bytes = p.bytes,
		.unpacked = unpacked,
	};
	p.img.run = (struct oci_run){};
	return 0;
}

static int entry_in_use(int cfd, const char *key)
{
	_cleanup_close_ int fd = entry_lock_exclusive(cfd, key); /* closed: unlocked */

	if (fd == -EBUSY)
		return 1;
	return fd < 0 && fd != -ENOENT ? fd : 0;
}

static int cmp_entries(const void *a, const void *b)
{
	return strcmp(((const struct image_cache_entry *)a)->key, ((const struct image_cache_entry *)b)->key);
}

int image_cache_list(const char *cache_dir, struct image_cache_entry **ret, size_t *ret_n)
{
	_cleanup_close_ int cfd = cache_open(cache_dir, false);
	struct image_cache_entry *l = NULL;
	size_t n = 0;
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	*ret = NULL;
	*ret_n = 0;
	if (cfd == -ENOENT)
		return 0;
	if (cfd < 0)
		return cfd;
	fd = openat(cfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		safe_close(fd);
		return -errno;
	}
	while (r == 0 && (de = readdir(d))) {
		struct entry_json j = {};
		struct image_cache_entry *t;
		int use;

		if (!key_valid(de->d_name) || entry_read(cfd, de->d_name, &j) < 0)
			continue;
		use = entry_in_use(cfd, de->d_name);
		t = realloc(l, (n + 1) * sizeof(*l));
		if (!t || use < 0) {
			entry_json_clear(&j);
			r = use < 0 ? use : -ENOMEM;
			break;
		}
		l = t;
		l[n] = (struct image_cache_entry){
			.key = strdup(de->d_name),
			.source = TAKE_PTR(j.source),
			.ref = TAKE_PTR(j.ref),
			.kind = j.kind,
			.bytes = j.bytes,
			.in_use = use > 0,
		};
		n++;
		entry_json_clear(&j);
		if (!l[n - 1].key)
			r = -ENOMEM;
	}
	closedir(d);
	if (r < 0) {
		image_cache_entries_free(l, n);
		return r;
	}
	if (n)
		qsort(l, n, sizeof(*l), cmp_entries);
	*ret = l;
	*ret_n = n;
	return 0;
}

static void remove_fingerprints(int cfd, const char *key)
{
	_cleanup_close_ int sfd = openat(cfd, "sources", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fd = sfd >= 0 ? openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -EBADF;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		safe_close(fd);
		return;
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *text = NULL;

		if (de->d_name[0] == '.' || read_beneath(sfd, de->d_name, 128, &text, NULL) < 0)
			continue;
		text[strcspn(text, "\n")] = 0;
		if (streq(text, key))
			(void)unlinkat(sfd, de->d_name, 0);
	}
	closedir(d);
}

int image_cache_remove(const char *cache_dir, const char *key)
{
	_cleanup_close_ int cfd = -EBADF, lk = -EBADF, entry_lock = -EBADF;
	struct stat st;

	if (!key_valid(key))
		return -EINVAL;
	cfd = cache_open(cache_dir, false);
	if (cfd < 0)
		return cfd;
	lk = cache_lock(cfd, false);
	if (lk < 0)
		return lk;
	if (fstatat(cfd, key, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	entry_lock = entry_lock_exclusive(cfd, key);
	if (entry_lock < 0 && entry_lock != -ENOENT)
		return entry_lock;
	remove_fingerprints(cfd, key);
	return remove_entry(cfd, key);
}
