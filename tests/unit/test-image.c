/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Container images on the host (images/image.c, images/unpack.c): OCI
 * layouts and docker-archives built here with libarchive, unpacked into
 * the cache; a hostile layer corpus, each refused with nothing written
 * outside the cache; the cache's reuse, rebuild, listing and removal; the
 * image's User resolved against its own /etc. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "image.h"
#include "test.h"
#include "unpack.h"

/* One tar entry. type: 'f' file (arg: content), 'd' dir, 'l' symlink (arg:
 * target), 'h' hardlink (arg: target), 'c'/'b' char/block device, 'p'
 * FIFO, 'z' a file of size zero bytes. */
struct ent {
	char type;
	const char *name;
	const char *arg;
	mode_t mode;
	uid_t uid;
	int64_t size;
};

struct layer_spec {
	const struct ent *ents;
	size_t n;
	char filter;     /* 0: tar, 'g': gzip, 'z': zstd */
	const char *raw; /* instead: these bytes (raw_n of them) */
	size_t raw_n;
};

#define LAYER(f, ...)                                                                             \
	{ .ents = (const struct ent[]){ __VA_ARGS__ },                                            \
	  .n = sizeof((const struct ent[]){ __VA_ARGS__ }) / sizeof(struct ent), .filter = f }

static void tar_write(const char *path, const struct layer_spec *l)
{
	struct archive *a = archive_write_new();
	static char zeros[1 << 20];

	ASSERT(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
	if (l->filter == 'g')
		ASSERT(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	if (l->filter == 'z')
		ASSERT(archive_write_add_filter_zstd(a) == ARCHIVE_OK);
	ASSERT(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (size_t i = 0; i < l->n; i++) {
		const struct ent *x = &l->ents[i];
		struct archive_entry *e = archive_entry_new();
		int64_t size = 0;

		archive_entry_set_pathname(e, x->name);
		archive_entry_set_mtime(e, 1600000000 + (time_t)i, 0);
		archive_entry_set_uid(e, x->uid);
		archive_entry_set_gid(e, x->uid);
		archive_entry_set_perm(e, x->mode ? x->mode : (x->type == 'd' ? 0755 : 0644));
		switch (x->type) {
		case 'f':
			archive_entry_set_filetype(e, AE_IFREG);
			size = (int64_t)strlen(x->arg);
			break;
		case 'z':
			archive_entry_set_filetype(e, AE_IFREG);
			size = x->size;
			break;
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, x->arg);
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, x->arg);
			break;
		case 'c':
		case 'b':
			archive_entry_set_filetype(e, x->type == 'c' ? AE_IFCHR : AE_IFBLK);
			archive_entry_set_rdev(e, makedev(1, 3));
			break;
		case 'p':
			archive_entry_set_filetype(e, AE_IFIFO);
			break;
		default:
			ASSERT(!"an entry type");
		}
		archive_entry_set_size(e, size);
		ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
		if (x->type == 'f')
			ASSERT(archive_write_data(a, x->arg, (size_t)size) == size);
		for (int64_t left = x->type == 'z' ? size : 0; left > 0;) {
			size_t k = left > (int64_t)sizeof(zeros) ? sizeof(zeros) : (size_t)left;

			ASSERT(archive_write_data(a, zeros, k) == (la_ssize_t)k);
			left -= (int64_t)k;
		}
		archive_entry_free(e);
	}
	ASSERT(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
}

static void sha256_of(const char *data, size_t n, char out[72])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[65];

	crypto_hash_sha256(h, (const unsigned char *)data, n);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(out, 72, "sha256:%s", hex);
}

/* The layer's bytes, in a buffer the caller frees. */
static char *layer_bytes(const char *dir, const struct layer_spec *l, size_t *n)
{
	_cleanup_free_ char *tmp = xasprintf("%s/layer.tmp", dir);
	char *buf = NULL;

	if (l->raw) {
		buf = malloc(l->raw_n);
		ASSERT(buf);
		memcpy(buf, l->raw, l->raw_n);
		*n = l->raw_n;
		return buf;
	}
	tar_write(tmp, l);
	ASSERT(read_file(tmp, 1 << 30, &buf, n) == 0);
	ASSERT(unlink(tmp) == 0);
	return buf;
}

static void put_blob(const char *dir, const char *data, size_t n, char digest[72])
{
	_cleanup_free_ char *path = NULL;

	sha256_of(data, n, digest);
	path = xasprintf("%s/blobs/sha256/%s", dir, digest + 7);
	ASSERT(write_file_at(AT_FDCWD, path, data, n, 0644, 0) == 0);
}

static const char *const media[] = {
	[0] = "application/vnd.oci.image.layer.v1.tar",
	['g'] = "application/vnd.oci.image.layer.v1.tar+gzip",
	['z'] = "application/vnd.oci.image.layer.v1.tar+zstd",
};

#define RUN_CONFIG "{\"Entrypoint\":[\"/bin/app\"],\"Cmd\":[\"-v\"],\"Env\":[\"PATH=/bin\"],\"WorkingDir\":\"/srv\",\"User\":\"www\"}"

/* An OCI layout in dir; the manifest's digest in manifest. */
static void make_layout(const char *dir, const struct layer_spec *ls, size_t n, char manifest[72])
{
	_cleanup_free_ char *blobs = xasprintf("%s/blobs/sha256", dir), *layers = strdup(""), *m = NULL, *p = NULL;
	_cleanup_free_ char *index = NULL;
	char digest[72], cfg[72];
	const char *config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":" RUN_CONFIG "}";

	ASSERT(mkdir_p(blobs, 0755) == 0);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		_cleanup_free_ char *bytes = layer_bytes(dir, &ls[i], &len);
		char *t;

		put_blob(dir, bytes, len, digest);
		t = xasprintf("%s%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", layers, i ? "," : "",
			      media[(int)ls[i].filter], digest, len);
		free(layers);
		layers = t;
	}
	put_blob(dir, config, strlen(config), cfg);
	m = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
		      "\"size\":%zu},\"layers\":[%s]}",
		      cfg, strlen(config), layers);
	put_blob(dir, m, strlen(m), manifest);
	index = xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
			  "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"%s\",\"size\":%zu}]}",
			  manifest, strlen(m));
	p = xasprintf("%s/index.json", dir);
	ASSERT(write_file(p, index, 0644, 0) == 0);
	free(p);
	p = xasprintf("%s/oci-layout", dir);
	ASSERT(write_file(p, "{\"imageLayoutVersion\":\"1.0.0\"}", 0644, 0) == 0);
}

static void outer_add(struct archive *a, const char *name, const char *data, size_t n)
{
	struct archive_entry *e = archive_entry_new();

	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (int64_t)n);
	ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
	ASSERT(archive_write_data(a, data, n) == (la_ssize_t)n);
	archive_entry_free(e);
}

/* A docker-archive at path, as dockerTools writes it: layers as
 * uncompressed tars, the config with their diff_ids; the outer tar
 * gzip-compressed if gzip (and then the config named as docker save 25
 * does). bad_diff_id: the last layer's is wrong. The
 * config's sha256 (the key) in key. */
/* make_docker() lists one more layer, dup/layer.tar: a symlink to this
 * (as docker save before 25 writes a layer that is there twice); the
 * diff_id given is the first layer's. */
static const char *docker_dup_link;
/* make_docker() adds this to its config's top level (",..."): NULL, none. */
static const char *docker_config_extra;

static void make_docker(const char *path, const struct layer_spec *ls, size_t n, bool gzip, bool bad_diff_id,
			char key[72])
{
	_cleanup_free_ char *dir = strndup(path, (size_t)(strrchr(path, '/') - path));
	_cleanup_free_ char *ids = strdup(""), *names = strdup(""), *config = NULL, *manifest = NULL;
	struct archive *a = archive_write_new();
	char **bytes = calloc(n + 1, sizeof(char *));
	size_t *lens = calloc(n + 1, sizeof(size_t));

	for (size_t i = 0; i < n; i++) {
		char id[72], *t;

		bytes[i] = layer_bytes(dir, &ls[i], &lens[i]);
		sha256_of(bytes[i], lens[i], id);
		if (bad_diff_id && i == n - 1)
			id[10] = id[10] == '0' ? '1' : '0';
		t = xasprintf("%s%s\"%s\"", ids, i ? "," : "", id);
		free(ids);
		ids = t;
		t = xasprintf("%s%s\"l%zu/layer.tar\"", names, i ? "," : "", i);
		free(names);
		names = t;
	}
	if (docker_dup_link) {
		char *t = xasprintf("%s,\"%.*s\"", ids, 71, ids + 1);

		free(ids);
		ids = t;
		t = xasprintf("%s,\"dup/layer.tar\"", names);
		free(names);
		names = t;
	}
	config = xasprintf("{\"architecture\":\"amd64\",\"config\":" RUN_CONFIG
			   ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]}%s}",
			   ids, docker_config_extra ? docker_config_extra : "");
	sha256_of(config, strlen(config), key);
	/* docker save 25 names it blobs/sha256/<hex>, with no .json. */
	manifest = xasprintf("[{\"Config\":\"%s\",\"RepoTags\":[\"test:latest\"],\"Layers\":[%s]}]",
			     gzip ? "blobs/sha256/cfg" : "cfg.json", names);
	ASSERT(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
	if (gzip)
		ASSERT(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	ASSERT(archive_write_open_filename(a, path) == ARCHIVE_OK);
	outer_add(a, gzip ? "blobs/sha256/cfg" : "cfg.json", config, strlen(config));
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *name = xasprintf("l%zu/layer.tar", i);

		outer_add(a, name, bytes[i], lens[i]);
		free(bytes[i]);
	}
	if (docker_dup_link) {
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, "dup/layer.tar");
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_set_symlink(e, docker_dup_link);
		ASSERT(archive_write_header(a, e) == ARCHIVE_OK);
		archive_entry_free(e);
	}
	outer_add(a, "manifest.json", manifest, strlen(manifest));
	ASSERT(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
	free(bytes);
	free(lens);
}

/* A test's directories: base/cache (the cache), base/sentinel (what
 * must stay as it is: one file, keep), base/img (the inputs). */
struct place {
	char *base, *cache, *sentinel, *img;
};

static void place_init(struct place *p)
{
	_cleanup_free_ char *keep = NULL;

	p->base = tmpdir();
	p->cache = xasprintf("%s/cache", p->base);
	p->sentinel = xasprintf("%s/sentinel", p->base);
	p->img = xasprintf("%s/img", p->base);
	keep = xasprintf("%s/keep", p->sentinel);
	ASSERT(mkdir(p->sentinel, 0755) == 0 && mkdir(p->img, 0755) == 0);
	ASSERT(write_file(keep, "keep", 0644, 0) == 0);
}

static void place_done(struct place *p)
{
	rm_tree(p->base);
	free(p->base);
	free(p->cache);
	free(p->sentinel);
	free(p->img);
}

static size_t count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && startswith(de->d_name, prefix))
			n++;
	closedir(d);
	return n;
}

/* Nothing outside the cache changed; no partial or entry left in it. */
static void check_contained(const struct place *p)
{
	_cleanup_free_ char *keep = xasprintf("%s/keep", p->sentinel), *text = NULL;

	ASSERT_EQ(count_entries(p->sentinel, ""), 1);
	ASSERT(read_file(keep, 100, &text, NULL) == 0);
	ASSERT_STREQ(text, "keep");
	ASSERT_EQ(count_entries(p->base, ""), 3); /* cache, sentinel, img */
	ASSERT_EQ(count_entries(p->cache, ".tmp-"), 0);
	ASSERT_EQ(count_entries(p->cache, "sha256-"), 0);
}

static void expect_file(const char *root, const char *rel, const char *content, mode_t mode, uid_t uid)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", root, rel), *text = NULL;
	struct stat st;

	ASSERT(lstat(path, &st) == 0);
	if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != mode || st.st_uid != uid) {
		printf("# %s: mode 0%o uid %u\n", rel, st.st_mode, st.st_uid);
		ASSERT(!"the file as expected");
	}
	ASSERT(read_file(path, 1 << 20, &text, NULL) == 0);
	ASSERT_STREQ(text, content);
}

static bool exists(const char *root, const char *rel)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", root, rel);
	struct stat st;

	return lstat(path, &st) == 0;
}

static const char *first_error(const struct schema_errors *e)
{
	return e->n ? e->lines[0] : "";
}

/* r, with the errors shown when it is not the one expected. */
static int shown(int r, const struct schema_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		test_diag_str(e->lines[i]);
	return r;
}

/* A base layer and one with whiteouts, an opaque directory (its own
 * entries on both sides of the marker) and a replaced file. */
static const struct layer_spec two_layers[] = {
	LAYER(0, { 'd', "bin", NULL, 0755, 0, 0 }, { 'f', "bin/app", "#!app\n", 0755, 0, 0 },
	      { 'f', "bin/su", "suid\n", 04755, 0, 0 }, { 'f', "bin/sg", "sgid\n", 02755, 0, 0 },
	      { 'd', "./srv", NULL, 0750, 1000, 0 }, { 'f', "./srv/data", "data\n", 0640, 1000, 0 },
	      { 'h', "srv/data2", "srv/data", 0, 0, 0 }, { 'l', "srv/link", "/etc/passwd", 0, 0, 0 },
	      { 'p', "srv/fifo", NULL, 0600, 0, 0 }, { 'f', "gone", "x\n", 0, 0, 0 },
	      { 'd', "gonedir", NULL, 0, 0, 0 }, { 'f', "gonedir/a", "a\n", 0, 0, 0 },
	      { 'd', "opq", NULL, 0, 0, 0 }, { 'f', "opq/lower", "lower\n", 0, 0, 0 },
	      { 'f', "replaced", "old\n", 0, 0, 0 }),
	LAYER('g', { 'f', ".wh.gone", "", 0, 0, 0 }, { 'f', ".wh.gonedir", "", 0, 0, 0 },
	      { 'f', "opq/before", "before\n", 0, 0, 0 }, { 'f', "opq/.wh..wh..opq", "", 0, 0, 0 },
	      { 'f', "opq/after", "after\n", 0, 0, 0 }, { 'f', "replaced", "new\n", 0, 0, 0 },
	      { 'f', "srv/.wh.nothing-there", "", 0, 0, 0 }),
};

static void check_two_layers(const char *rootfs, bool setuid)
{
	struct stat st, st2;
	_cleanup_free_ char *data = xasprintf("%s/srv/data", rootfs), *data2 = xasprintf("%s/srv/data2", rootfs);
	_cleanup_free_ char *link = xasprintf("%s/srv/link", rootfs), *srv = xasprintf("%s/srv", rootfs);
	char target[64] = {};

	expect_file(rootfs, "bin/app", "#!app\n", 0755, 0);
	expect_file(rootfs, "bin/su", "suid\n", setuid ? 04755 : 0755, 0);
	expect_file(rootfs, "bin/sg", "sgid\n", setuid ? 02755 : 0755, 0);
	expect_file(rootfs, "srv/data", "data\n", 0640, 1000);
	ASSERT(stat(data, &st) == 0 && stat(data2, &st2) == 0);
	ASSERT(st.st_ino == st2.st_ino && st.st_nlink == 2);
	ASSERT(st.st_mtime == 1600000005);
	ASSERT(stat(srv, &st) == 0 && st.st_uid == 1000 && (st.st_mode & 07777) == 0750 && st.st_mtime == 1600000004);
	ASSERT(readlink(link, target, sizeof(target) - 1) > 0);
	ASSERT_STREQ(target, "/etc/passwd");
	ASSERT(exists(rootfs, "srv/fifo"));
	ASSERT(!exists(rootfs, "gone") && !exists(rootfs, "gonedir") && !exists(rootfs, ".wh.gone"));
	ASSERT(!exists(rootfs, "opq/lower") && !exists(rootfs, "opq/.wh..wh..opq"));
	expect_file(rootfs, "opq/before", "before\n", 0644, 0);
	expect_file(rootfs, "opq/after", "after\n", 0644, 0);
	expect_file(rootfs, "replaced", "new\n", 0644, 0);
	ASSERT(!exists(rootfs, "srv/.wh.nothing-there"));
}

TEST(layout_unpacked_and_cached)
{
	struct place p;
	struct image_cached c, c2;
	struct image_info info = {};
	struct schema_errors e = {};
	_cleanup_free_ char *key = NULL, *json = NULL, *path = NULL;
	char manifest[72];
	struct stat st;

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	key = xasprintf("sha256-%s", manifest + 7);

	ASSERT(image_inspect(p.img, NULL, p.cache, &info, &e) == 0);
	ASSERT_STREQ(info.key, key);
	ASSERT(info.kind == IMAGE_LAYOUT && !info.complete);
	ASSERT_STREQ(info.run.user, "www");
	image_info_clear(&info);

	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT_EQ(e.n, 0);
	ASSERT(c.unpacked && c.lock_fd >= 0);
	ASSERT_STREQ(c.key, key);
	ASSERT_STREQ(c.run.entrypoint[0], "/bin/app");
	ASSERT_STREQ(c.run.workdir, "/srv");
	ASSERT(c.bytes > 0);
	path = xasprintf("%s/%s/rootfs", p.cache, key);
	ASSERT_STREQ(c.rootfs, path);
	check_two_layers(c.rootfs, false);
	ASSERT(stat(p.cache, &st) == 0 && (st.st_mode & 07777) == 0700);
	ASSERT_EQ(count_entries(p.cache, ".tmp-"), 0);
	free(path);
	path = xasprintf("%s/%s/image.json", p.cache, key);
	ASSERT(read_file(path, 1 << 20, &json, NULL) == 0);
	ASSERT(strstr(json, "\"kind\":\"layout\""));

	/* The second time: nothing unpacked; the first user still holds its lock. */
	ASSERT(image_inspect(p.img, NULL, p.cache, &info, &e) == 0);
	ASSERT(info.complete);
	image_info_clear(&info);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c2, &e), &e) == 0);
	ASSERT(!c2.unpacked && c2.lock_fd >= 0);
	ASSERT_EQ(c2.bytes, c.bytes);
	ASSERT_STREQ(c2.run.cmd[0], "-v");
	image_cached_clear(&c2);
	image_cached_clear(&c);
	place_done(&p);
}

TEST(setuid_kept_when_allowed)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	struct image_unpack_opts o = { .allow_setuid = true };
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &o, &c, &e), &e) == 0);
	check_two_layers(c.rootfs, true);
	image_cached_clear(&c);
	place_done(&p);
}

TEST(docker_archive)
{
	struct place p;
	struct image_cached c;
	struct image_info info = {};
	struct schema_errors e = {};
	_cleanup_free_ char *archive = NULL, *key = NULL, *other = NULL;
	char cfg[72], cfg2[72];

	place_init(&p);
	archive = xasprintf("%s/image.tar.gz", p.img);
	{
		/* The second layer uncompressed: a docker-archive's layers are. */
		struct layer_spec both[2] = { two_layers[0], two_layers[1] };

		both[1].filter = 0;
		make_docker(archive, both, 2, true, false, cfg);
	}
	key = xasprintf("sha256-%s", cfg + 7);
	ASSERT(image_inspect(archive, NULL, NULL, &info, &e) == 0);
	ASSERT(info.kind == IMAGE_DOCKER_ARCHIVE && !info.complete);
	ASSERT_STREQ(info.key, key);
	ASSERT_STREQ(info.run.env[0], "PATH=/bin");
	image_info_clear(&info);
	ASSERT(image_inspect(archive, "test:latest", p.cache, &info, &e) == 0);
	image_info_clear(&info);
	ASSERT(image_inspect(archive, "other:1", p.cache, &info, &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "manifest.json: no image tagged other:1");
	schema_errors_clear(&e);

	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	ASSERT_STREQ(c.key, key);
	check_two_layers(c.rootfs, false);
	ASSERT_EQ(count_entries(p.cache, ".tmp-"), 0);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(!c.unpacked);
	ASSERT_STREQ(c.run.user, "www");
	image_cached_clear(&c);

	/* A cached archive is inspected from its fingerprint alone: point
	 * the fingerprint at another complete entry, and that one answers. */
	other = xasprintf("%s/other.tar", p.img);
	make_docker(other, two_layers, 1, false, false, cfg2);
	ASSERT(shown(image_cache_get(p.cache, other, NULL, NULL, &c, &e), &e) == 0);
	image_cached_clear(&c);
	ASSERT_EQ(count_entries(p.cache, "sha256-"), 2);
	{
		_cleanup_free_ char *sources = xasprintf("%s/sources", p.cache), *text = NULL;
		DIR *d = opendir(sources);
		struct dirent *de;
		size_t found = 0;

		ASSERT(d);
		while ((de = readdir(d))) {
			_cleanup_free_ char *name = xasprintf("%s/%s", sources, de->d_name);

			if (de->d_name[0] == '.')
				continue;
			ASSERT(read_file(name, 100, &text, NULL) == 0);
			if (startswith(text, key)) {
				free(text);
				text = xasprintf("sha256-%s\n", cfg2 + 7);
				ASSERT(write_file(name, text, 0600, 0) == 0);
				found++;
			}
			text = mfree(text);
		}
		closedir(d);
		ASSERT_EQ(found, 1);
	}
	ASSERT(image_inspect(archive, NULL, p.cache, &info, &e) == 0);
	ASSERT(info.complete && startswith(info.key + 7, cfg2 + 7));
	image_info_clear(&info);
	place_done(&p);
}

TEST(docker_archive_symlinked_layer)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *archive = NULL;
	const struct layer_spec one[] = { LAYER(0, { 'f', "a", "a\n", 0, 0, 0 }, { 'f', ".wh.nothing", "", 0, 0, 0 }) };
	char cfg[72];

	place_init(&p);
	archive = xasprintf("%s/dup.tar", p.img);
	docker_dup_link = "./../l0/./layer.tar";
	make_docker(archive, one, 1, false, false, cfg);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	expect_file(c.rootfs, "a", "a\n", 0644, 0);
	/* The same config, so the same key: gone, for the others to be read. */
	{
		_cleanup_free_ char *key = strdup(c.key);

		image_cached_clear(&c);
		ASSERT(image_cache_remove(p.cache, key) == 0);
	}
	ASSERT(unlink(archive) == 0);

	docker_dup_link = "../../l0/layer.tar";
	make_docker(archive, one, 1, false, false, cfg);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == -EINVAL);
	ASSERT_STREQ(first_error(&e), "dup/layer.tar: a symlink out of the archive");
	schema_errors_clear(&e);
	ASSERT(unlink(archive) == 0);

	docker_dup_link = "../cfg.json";
	make_docker(archive, one, 1, false, false, cfg);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "Layers: [1]: dup/layer.tar: a symlink to cfg.json, which is not another layer");
	schema_errors_clear(&e);
	docker_dup_link = NULL;
	ASSERT_EQ(count_entries(p.cache, "sha256-"), 0);
	ASSERT_EQ(count_entries(p.cache, ".tmp-"), 0);
	place_done(&p);
}

static char *raw_header(const char *name, uint64_t size, size_t *n)
{
	char *h = calloc(1, 512);
	unsigned sum = 0;

	snprintf(h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	/* Base-256 size: 10 GB does not fit 11 octal digits. */
	h[124] = (char)0x80;
	for (int i = 0; i < 8; i++)
		h[135 - i] = (char)((size >> (8 * i)) & 0xff);
	memcpy(h + 136, "00000000000", 12);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	*n = 512;
	return h;
}

struct hostile {
	const char *what;
	struct layer_spec layers[2];
	size_t n;
	const char *error; /* a part of the first error */
};

TEST(hostile_layers_refused)
{
	struct place p;
	size_t raw_n;
	_cleanup_free_ char *raw = raw_header("sparse-bomb", 10ULL * 1000 * 1000 * 1000, &raw_n);
	char manifest[72];

	place_init(&p);
	{
		_cleanup_free_ char *abs = xasprintf("%s/abs", p.sentinel);
		const struct hostile cases[] = {
			{ "dot-dot", { LAYER(0, { 'f', "../escape", "x", 0, 0, 0 }) }, 1,
			  ": ../escape: a \"..\" component (refused)" },
			{ "dot-dot-inside", { LAYER(0, { 'd', "a", NULL, 0, 0, 0 }, { 'f', "a/../../escape", "x", 0, 0, 0 }) },
			  1, "a/../../escape: a \"..\" component (refused)" },
			{ "absolute", { LAYER(0, { 'f', abs, "x", 0, 0, 0 }) }, 1, "an absolute path (refused)" },
			{ "symlink-then-write",
			  { LAYER(0, { 'l', "evil", p.sentinel, 0, 0, 0 }, { 'f', "evil/file", "x", 0, 0, 0 }) }, 1,
			  "evil/file: a write through a symlink (refused)" },
			{ "symlink-layer-1-write-layer-2",
			  { LAYER(0, { 'd', "real", NULL, 0, 0, 0 }, { 'l', "s", "real", 0, 0, 0 }),
			    LAYER('g', { 'f', "s/file", "x", 0, 0, 0 }) },
			  2, "s/file: a write through a symlink (refused)" },
			{ "symlink-out-layer-1-write-layer-2",
			  { LAYER(0, { 'l', "s", p.sentinel, 0, 0, 0 }), LAYER(0, { 'd', "s/sub", NULL, 0, 0, 0 }) }, 2,
			  "s/sub: a write through a symlink (refused)" },
			{ "whiteout-through-symlink",
			  { LAYER(0, { 'l', "w", p.sentinel, 0, 0, 0 }), LAYER(0, { 'f', "w/.wh.keep", "", 0, 0, 0 }) }, 2,
			  "w/.wh.keep: a whiteout through a symlink (refused)" },
			{ "opaque-through-symlink",
			  { LAYER(0, { 'l', "w", p.sentinel, 0, 0, 0 }), LAYER(0, { 'f', "w/.wh..wh..opq", "", 0, 0, 0 }) },
			  2, "a whiteout through a symlink (refused)" },
			{ "hardlink-dot-dot", { LAYER(0, { 'h', "h", "../x", 0, 0, 0 }) }, 1, "h: a hardlink to ../x" },
			{ "hardlink-absolute", { LAYER(0, { 'h', "h", "/etc/passwd", 0, 0, 0 }) }, 1,
			  "h: a hardlink to /etc/passwd: an absolute path (refused)" },
			{ "hardlink-to-symlink",
			  { LAYER(0, { 'l', "ln", "/etc/passwd", 0, 0, 0 }, { 'h', "h", "ln", 0, 0, 0 }) }, 1,
			  "h: a hardlink to a symlink or through one (refused)" },
			{ "hardlink-through-symlink",
			  { LAYER(0, { 'l', "ln", p.sentinel, 0, 0, 0 }, { 'h', "h", "ln/keep", 0, 0, 0 }) }, 1,
			  "h: a hardlink to a symlink or through one (refused)" },
			{ "hardlink-to-nothing", { LAYER(0, { 'h', "h", "missing", 0, 0, 0 }) }, 1,
			  "which is not a file extracted before (refused)" },
			{ "hardlink-to-dir", { LAYER(0, { 'd', "d", NULL, 0, 0, 0 }, { 'h', "h", "d", 0, 0, 0 }) }, 1,
			  "which is not a regular file (refused)" },
			{ "char-device", { LAYER(0, { 'c', "dev/null", NULL, 0666, 0, 0 }) }, 1,
			  "dev/null: a device node (refused)" },
			{ "block-device", { LAYER('z', { 'b', "sda", NULL, 0660, 0, 0 }) }, 1, "sda: a device node (refused)" },
			{ "sparse-10GB-header", { { .raw = raw, .raw_n = raw_n } }, 1,
			  "sparse-bomb: 10000000000 bytes, over the limit of 67108864 (refused)" },
			{ "over-in-total",
			  { LAYER(0, { 'z', "a", NULL, 0, 0, 40 << 20 }), LAYER('g', { 'z', "b", NULL, 0, 0, 40 << 20 }) }, 2,
			  "b: the image is over the limit of 67108864 bytes (refused)" },
		};

		for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
			_cleanup_free_ char *dir = xasprintf("%s/%zu", p.img, i);
			struct image_unpack_opts o = { .max_bytes = 64 << 20 };
			struct schema_errors e = {};
			struct image_cached c;

			printf("# %s\n", cases[i].what);
			ASSERT(mkdir(dir, 0755) == 0);
			make_layout(dir, cases[i].layers, cases[i].n, manifest);
			ASSERT(shown(image_cache_get(p.cache, dir, NULL, &o, &c, &e), &e) == -EBADMSG);
			ASSERT(c.lock_fd < 0 && !c.key);
			if (!strstr(first_error(&e), cases[i].error)) {
				test_diag_str(first_error(&e));
				ASSERT(!"the expected error");
			}
			ASSERT(startswith(first_error(&e), "layer "));
			schema_errors_clear(&e);
			check_contained(&p);
		}
	}
	place_done(&p);
}

/* An entry at the name of a symlink of a layer below replaces the
 * symlink: a file is not written through it, a directory's mode and
 * times not set through it. */
TEST(symlinks_replaced_not_followed)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *keep = NULL;
	char manifest[72];
	struct stat before, after, st;

	place_init(&p);
	keep = xasprintf("%s/keep", p.sentinel);
	ASSERT(stat(p.sentinel, &before) == 0);
	{
		const struct layer_spec layers[] = {
			LAYER(0, { 'l', "x", keep, 0, 0, 0 }, { 'l', "d", p.sentinel, 0, 0, 0 }),
			LAYER(0, { 'f', "x", "mine\n", 0600, 0, 0 }, { 'd', "d", NULL, 0700, 0, 0 }),
		};

		make_layout(p.img, layers, 2, manifest);
	}
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	expect_file(c.rootfs, "x", "mine\n", 0600, 0);
	{
		_cleanup_free_ char *d = xasprintf("%s/d", c.rootfs);

		ASSERT(lstat(d, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700);
	}
	ASSERT(stat(p.sentinel, &after) == 0);
	ASSERT(after.st_mode == before.st_mode && after.st_mtime == before.st_mtime);
	ASSERT_EQ(count_entries(p.sentinel, ""), 1);
	expect_file(p.sentinel, "keep", "keep", 0644, 0);
	image_cached_clear(&c);
	place_done(&p);
}

TEST(gzip_bomb_refused)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	struct image_unpack_opts o = { .max_bytes = 64 << 20 };
	const struct layer_spec bomb[] = { LAYER('g', { 'z', "zeros", NULL, 0, 0, 2LL << 30 }) };
	char manifest[72];
	usec_t t0;

	place_init(&p);
	make_layout(p.img, bomb, 1, manifest);
	t0 = now_usec();
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &o, &c, &e), &e) == -EBADMSG);
	ASSERT(strstr(first_error(&e), "zeros: 2147483648 bytes, over the limit of 67108864 (refused)"));
	/* Refused at the header: the 2 GiB were never inflated. */
	ASSERT(now_usec() - t0 < 5 * USEC_PER_SEC);
	schema_errors_clear(&e);
	check_contained(&p);
	place_done(&p);
}

TEST(digest_mismatch_refused)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	const struct layer_spec one[] = { LAYER(0, { 'f', "a", "aaaa", 0, 0, 0 }) };
	_cleanup_free_ char *blobs = NULL, *archive = NULL;
	char manifest[72], cfg[72];
	size_t changed = 0;
	DIR *d;
	struct dirent *de;

	place_init(&p);
	make_layout(p.img, one, 1, manifest);
	/* The layer blob (the tar) with other bytes of its size. */
	blobs = xasprintf("%s/blobs/sha256", p.img);
	d = opendir(blobs);
	ASSERT(d);
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = xasprintf("%s/%s", blobs, de->d_name);
		struct stat st;

		_cleanup_free_ char *text = NULL;
		size_t n;

		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && read_file(path, 1 << 20, &text, &n) == 0 &&
		    n >= 1024 && memmem(text, n, "aaaa", 4)) {
			changed++;
			*(char *)memmem(text, n, "aaaa", 4) = 'b';
			ASSERT(unlink(path) == 0);
			ASSERT(write_file_at(AT_FDCWD, path, text, n, 0644, 0) == 0);
		}
	}
	closedir(d);
	ASSERT_EQ(changed, 1);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == -EBADMSG);
	ASSERT(strstr(first_error(&e), "): its content does not match its digest (sha256)"));
	schema_errors_clear(&e);
	check_contained(&p);

	/* A docker-archive layer against its diff_id. */
	archive = xasprintf("%s/bad.tar", p.img);
	make_docker(archive, one, 1, false, true, cfg);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == -EBADMSG);
	ASSERT(strstr(first_error(&e), "l0/layer.tar: its content does not match its diff_id (sha256)"));
	schema_errors_clear(&e);
	ASSERT(unlink(archive) == 0);
	check_contained(&p);

	/* And a hostile docker-archive layer: refused the same way. */
	const struct layer_spec escape[] = { LAYER(0, { 'f', "../escape", "x", 0, 0, 0 }) };
	make_docker(archive, escape, 1, true, false, cfg);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == -EBADMSG);
	ASSERT(strstr(first_error(&e), "../escape: a \"..\" component (refused)"));
	schema_errors_clear(&e);
	ASSERT(unlink(archive) == 0);
	check_contained(&p);
	place_done(&p);
}

/* The unpacker alone: limits the cache does not expose, zstd. */
TEST(unpack_limits)
{
	struct place p;
	const struct layer_spec four = LAYER('z', { 'd', "a", NULL, 0, 0, 0 }, { 'f', "a/b", "b", 0, 0, 0 },
					     { 'f', "c", "c", 0, 0, 0 }, { 'f', "d", "d", 0, 0, 0 });
	_cleanup_free_ char *tar = NULL, *root = NULL, *longname = malloc(PATH_MAX + 10);
	_cleanup_close_ int fd = -EBADF, rfd = -EBADF;
	struct unpack_layer l = { .label = "test" };
	struct unpack_opts o = { .max_entries = 3 };
	struct schema_errors e = {};
	uint64_t bytes = 0;

	place_init(&p);
	tar = xasprintf("%s/four.tar.zst", p.img);
	root = xasprintf("%s/root", p.img);
	ASSERT(mkdir(root, 0755) == 0);
	rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	tar_write(tar, &four);
	fd = open(tar, O_RDONLY | O_CLOEXEC);
	ASSERT(fd >= 0 && rfd >= 0);
	l.fd = fd;
	ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == -EBADMSG);
	ASSERT_STREQ(first_error(&e), "layer 1 (test): d: more than 3 entries in the image (refused)");
	schema_errors_clear(&e);
	o.max_entries = 4;
	ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == 0);
	ASSERT_EQ(bytes, 3);
	expect_file(root, "a/b", "b", 0644, 0);
	/* Applied again on itself: the same tree. */
	ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == 0);
	expect_file(root, "d", "d", 0644, 0);

	memset(longname, 'x', PATH_MAX + 9);
	longname[PATH_MAX + 9] = 0;
	for (size_t i = 100; i < PATH_MAX; i += 100)
		longname[i] = '/';
	{
		const struct layer_spec big = LAYER(0, { 'f', longname, "x", 0, 0, 0 });

		safe_close(fd);
		tar_write(tar, &big);
		fd = open(tar, O_RDONLY | O_CLOEXEC);
		l.fd = fd;
		ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == -EBADMSG);
		ASSERT(strstr(first_error(&e), "...: a name longer than PATH_MAX (refused)"));
		schema_errors_clear(&e);
	}
	place_done(&p);
}

TEST(partial_entries_rebuilt)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *json = NULL, *stale = NULL, *link = NULL;
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, 2, manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	json = xasprintf("%s/%s/image.json", p.cache, c.key);
	image_cached_clear(&c);

	/* A crash before the rename: a .tmp- dir, with a link out of it. */
	stale = xasprintf("%s/.tmp-x-y", p.cache);
	ASSERT(mkdir(stale, 0700) == 0);
	link = xasprintf("%s/out", stale);
	ASSERT(symlink(p.sentinel, link) == 0);
	/* An entry with no image.json. */
	ASSERT(unlink(json) == 0);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	check_two_layers(c.rootfs, false);
	ASSERT(!exists(p.cache, ".tmp-x-y"));
	ASSERT_EQ(count_entries(p.cache, ".tmp-"), 0);
	ASSERT_EQ(count_entries(p.sentinel, ""), 1);
	image_cached_clear(&c);
	place_done(&p);
}

TEST(list_and_remove)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	struct image_cache_entry *l = NULL;
	_cleanup_free_ char *archive = NULL, *evil = NULL, *key = NULL;
	char manifest[72], cfg[72];
	size_t n;

	place_init(&p);
	ASSERT(image_cache_list(p.cache, &l, &n) == 0 && n == 0); /* no cache yet */
	make_layout(p.img, two_layers, 2, manifest);
	archive = xasprintf("%s/img.tar", p.img);
	/* The rootfs holds a symlink to outside: removal must not follow it. */
	evil = xasprintf("%s/keep", p.sentinel);
	{
		const struct layer_spec out[] = { LAYER(0, { 'l', "out", p.sentinel, 0, 0, 0 },
							 { 'l', "keep", evil, 0, 0, 0 }, { 'd', "d", NULL, 0555, 0, 0 },
							 { 'f', "d/f", "f", 0, 0, 0 }) };

		make_docker(archive, out, 1, false, false, cfg);
	}
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, archive, "test:latest", NULL, &c, &e), &e) == 0);
	key = strdup(c.key);

	ASSERT(image_cache_list(p.cache, &l, &n) == 0);
	ASSERT_EQ(n, 2);
	for (size_t i = 0; i < n; i++) {
		bool docker = streq(l[i].key, key);

		ASSERT(l[i].in_use == docker);
		ASSERT_STREQ(l[i].source, docker ? archive : p.img);
		ASSERT(docker ? l[i].ref && streq(l[i].ref, "test:latest") : !l[i].ref);
		ASSERT(l[i].kind == (docker ? IMAGE_DOCKER_ARCHIVE : IMAGE_LAYOUT));
		ASSERT(l[i].bytes > 0);
	}
	ASSERT(strcmp(l[0].key, l[1].key) < 0);
	image_cache_entries_free(l, n);

	ASSERT(image_cache_remove(p.cache, key) == -EBUSY);
	ASSERT(exists(p.cache, key));
	ASSERT(image_cache_remove(p.cache, "sha256-../../x") == -EINVAL);
	ASSERT(image_cache_remove(p.cache, "sha256-0000000000000000000000000000000000000000000000000000000000000000") ==
	       -ENOENT);
	image_cached_clear(&c);
	ASSERT_EQ(count_entries(p.cache, "sources"), 1);
	{
		_cleanup_free_ char *sources = xasprintf("%s/sources", p.cache);

		ASSERT_EQ(count_entries(sources, ""), 1);
		ASSERT(image_cache_remove(p.cache, key) == 0);
		ASSERT_EQ(count_entries(sources, ""), 0);
	}
	ASSERT(!exists(p.cache, key));
	ASSERT_EQ(count_entries(p.cache, ".tmp-"), 0);
	ASSERT_EQ(count_entries(p.sentinel, ""), 1);
	ASSERT(exists(p.sentinel, "keep"));
	ASSERT(image_cache_list(p.cache, &l, &n) == 0);
	ASSERT_EQ(n, 1);
	ASSERT(!l[0].in_use);
	image_cache_entries_free(l, n);
	place_done(&p);
}

TEST(user_resolved_in_the_image)
{
	_cleanup_free_ char *root = tmpdir(), *etc = xasprintf("%s/etc", root), *store = NULL, *p = NULL;
	_cleanup_close_ int rfd = -EBADF;
	struct schema_errors e = {};
	gid_t *groups = NULL;
	size_t n;
	uid_t uid;
	gid_t gid;

	ASSERT(mkdir(etc, 0755) == 0);
	/* As in Nix images: /etc/passwd a symlink into the store, absolute. */
	store = xasprintf("%s/nix/store/abc-passwd", root);
	ASSERT(mkdir_p(store, 0755) == 0);
	p = xasprintf("%s/passwd", store);
	ASSERT(write_file(p, "root:x:0:0::/root:/bin/sh\n# a comment\nwww:x:33:33::/var/www:/bin/false\n"
			     "app:x:1000:1000:::\n",
			  0644, 0) == 0);
	free(p);
	p = xasprintf("%s/passwd", etc);
	ASSERT(symlink("/nix/store/abc-passwd/passwd", p) == 0);
	free(p);
	p = xasprintf("%s/group", etc);
	ASSERT(write_file(p, "root:x:0:\nwww:x:33:\nstaff:x:50:www,app\nlog:x:60:app,www\nself:x:1000:app\n", 0644,
			  0) == 0);
	rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT(rfd >= 0);

	ASSERT(image_resolve_user(rfd, "", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 0 && gid == 0 && n == 0 && !groups);
	ASSERT(image_resolve_user(rfd, NULL, &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 0 && gid == 0 && n == 0);

	ASSERT(image_resolve_user(rfd, "www", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 33 && gid == 33 && n == 2 && groups[0] == 50 && groups[1] == 60);
	free(groups);
	/* app's own group is its primary one, not a supplementary one. */
	ASSERT(image_resolve_user(rfd, "1000", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 1000 && gid == 1000 && n == 2 && groups[0] == 50 && groups[1] == 60);
	free(groups);
	ASSERT(image_resolve_user(rfd, "1000:1000", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 1000 && gid == 1000 && n == 0);
	ASSERT(image_resolve_user(rfd, "www:staff", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 33 && gid == 50 && n == 0);
	ASSERT(image_resolve_user(rfd, "www:7", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 33 && gid == 7);
	ASSERT(image_resolve_user(rfd, "4242", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 4242 && gid == 0 && n == 0);
	ASSERT(image_resolve_user(rfd, "4242:4243", &uid, &gid, &groups, &n, &e) == 0);
	ASSERT(uid == 4242 && gid == 4243);

	ASSERT(image_resolve_user(rfd, "nginx", &uid, &gid, &groups, &n, &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "user: no user nginx in the image's /etc/passwd");
	schema_errors_clear(&e);
	ASSERT(image_resolve_user(rfd, "www:wheel", &uid, &gid, &groups, &n, &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "user: no group wheel in the image's /etc/group");
	schema_errors_clear(&e);
	ASSERT(image_resolve_user(rfd, ":5", &uid, &gid, &groups, &n, &e) == -EINVAL);
	schema_errors_clear(&e);

	/* An etc/group that links out of the image resolves inside it: to
	 * nothing here, not to the host's /etc/group. */
	free(p);
	p = xasprintf("%s/group", etc);
	ASSERT(unlink(p) == 0);
	ASSERT(symlink("/../../../etc/shadow", p) == 0);
	ASSERT(image_resolve_user(rfd, "www:root", &uid, &gid, &groups, &n, &e) == -ENOENT);
	ASSERT_STREQ(first_error(&e), "user: no group root in the image's /etc/group");
	schema_errors_clear(&e);
	rm_tree(root);
}

/* What the daemon asks: an entry only if it is complete and the cache not
 * busy, never waiting, unpacking or reading an archive it has no
 * fingerprint of: -EAGAIN, with nothing said and nothing made. */
TEST(cached_only)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	struct image_unpack_opts only = { .cached_only = true };
	_cleanup_free_ char *archive = NULL, *lock = NULL;
	_cleanup_close_ int lk = -EBADF;
	char manifest[72], cfg[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(image_cache_get(p.cache, p.img, NULL, &only, &c, &e) == -EAGAIN);
	ASSERT_EQ(e.n, 0);
	ASSERT(c.lock_fd < 0 && !c.key);
	ASSERT_EQ(count_entries(p.cache, "sha256-") + count_entries(p.cache, ".tmp-"), 0);
	/* An archive with no fingerprint yet: not even read. */
	archive = xasprintf("%s/image.tar", p.img);
	make_docker(archive, two_layers, 1, false, false, cfg);
	ASSERT(image_cache_get(p.cache, archive, NULL, &only, &c, &e) == -EAGAIN);
	ASSERT_EQ(e.n, 0);

	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &only, &c, &e), &e) == 0);
	ASSERT(!c.unpacked && c.lock_fd >= 0);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, &only, &c, &e), &e) == 0);
	ASSERT(!c.unpacked && c.lock_fd >= 0);
	image_cached_clear(&c);

	/* Another unpack holds the cache: not waited for. */
	lock = xasprintf("%s/.lock", p.cache);
	lk = open(lock, O_RDWR | O_CLOEXEC);
	ASSERT(lk >= 0 && flock(lk, LOCK_EX) == 0);
	ASSERT(image_cache_get(p.cache, p.img, NULL, &only, &c, &e) == -EAGAIN);
	ASSERT_EQ(e.n, 0);
	lk = safe_close(lk);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &only, &c, &e), &e) == 0);
	image_cached_clear(&c);
	place_done(&p);
}

/* image.json of an entry, rewritten by f (a test's damage). */
static void entry_json_edit(const char *cache, const char *key, void (*f)(json_t *))
{
	_cleanup_free_ char *path = xasprintf("%s/%s/image.json", cache, key), *text = NULL;
	json_t *j;

	ASSERT(read_file(path, 64 << 20, &text, NULL) == 0);
	j = json_loads(text, 0, NULL);
	ASSERT(j);
	f(j);
	free(text);
	text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	ASSERT(text && write_file(path, text, 0600, 0) == 0);
}

/* A config that JSON_INDENT would blow up (every level indents each
 * element below it): image.json stays small enough to be read back, and
 * the entry is found again rather than unpacked on every boot. */
TEST(entry_json_of_a_deep_config)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *archive = NULL, *extra = NULL, *json = NULL;
	const size_t depth = 1000, width = 5000;
	char cfg[72];
	size_t n = 0, len;

	place_init(&p);
	extra = malloc(2 * depth + 2 * width + 16);
	n += (size_t)sprintf(extra, ",\"x\":");
	for (size_t i = 0; i < depth; i++)
		extra[n++] = '[';
	for (size_t i = 0; i < width; i++)
		n += (size_t)sprintf(extra + n, "%s0", i ? "," : "");
	for (size_t i = 0; i < depth; i++)
		extra[n++] = ']';
	extra[n] = 0;
	archive = xasprintf("%s/deep.tar", p.img);
	docker_config_extra = extra;
	make_docker(archive, two_layers, 1, false, false, cfg);
	docker_config_extra = NULL;
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	json = xasprintf("%s/%s/image.json", p.cache, c.key);
	image_cached_clear(&c);
	{
		_cleanup_free_ char *text = NULL;

		ASSERT(read_file(json, 64 << 20, &text, &len) == 0);
		ASSERT(len < 2 * strlen(extra) + 4096);
	}
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(!c.unpacked);
	image_cached_clear(&c);
	place_done(&p);
}

/* An entry whose image.json cannot be read is partial, but one a VM
 * holds is not deleted under it: -EBUSY, until the VM lets it go. */
TEST(unreadable_entry_in_use_kept)
{
	struct place p;
	struct image_cached c, c2;
	struct schema_errors e = {};
	_cleanup_free_ char *json = NULL, *want = NULL;
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	json = xasprintf("%s/%s/image.json", p.cache, c.key);
	ASSERT(write_file(json, "{not json", 0600, 0) == 0);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c2, &e), &e) == -EBUSY);
	want = xasprintf("image: the cache entry %s is in use and cannot be rebuilt", c.key);
	ASSERT_STREQ(first_error(&e), want);
	ASSERT(c2.lock_fd < 0 && !c2.key);
	schema_errors_clear(&e);
	check_two_layers(c.rootfs, false);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	check_two_layers(c.rootfs, false);
	image_cached_clear(&c);
	place_done(&p);
}

/* The fingerprint of an unpacked archive is what a cached_only get finds
 * it by: not written, the get fails rather than say it is cached. */
TEST(fingerprint_not_written_is_an_error)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *archive = NULL, *sources = NULL;
	char cfg[72];

	place_init(&p);
	archive = xasprintf("%s/image.tar", p.img);
	make_docker(archive, two_layers, 1, false, false, cfg);
	sources = xasprintf("%s/sources", p.cache);
	ASSERT(mkdir(p.cache, 0700) == 0 && write_file(sources, "", 0600, 0) == 0);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == -ENOTDIR);
	ASSERT(strstr(first_error(&e), "sources: "));
	ASSERT(c.lock_fd < 0 && !c.key);
	schema_errors_clear(&e);
	ASSERT(unlink(sources) == 0);
	ASSERT(shown(image_cache_get(p.cache, archive, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(!c.unpacked);
	image_cached_clear(&c);
	{
		struct image_unpack_opts only = { .cached_only = true };

		ASSERT(shown(image_cache_get(p.cache, archive, NULL, &only, &c, &e), &e) == 0);
		image_cached_clear(&c);
	}
	place_done(&p);
}

/* docker and containerd remove a directory that a later layer puts a
 * file, a symlink or a hardlink at (overlay2's diffs say `rm -rf /app &&
 * ln -s /data /app` with the symlink alone). */
TEST(directory_replaced_by_non_directory)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	const struct layer_spec layers[] = {
		LAYER(0, { 'd', "app", NULL, 0, 0, 0 }, { 'f', "app/f", "f", 0, 0, 0 }, { 'd', "app/sub", NULL, 0, 0, 0 },
		      { 'f', "app/sub/g", "g", 0, 0, 0 }, { 'l', "app/sub/out", "/", 0, 0, 0 },
		      { 'd', "conf", NULL, 0, 0, 0 }, { 'f', "conf/x", "x", 0, 0, 0 }, { 'd', "hl", NULL, 0, 0, 0 }),
		LAYER('g', { 'l', "app", "/data", 0, 0, 0 }, { 'f', "conf", "a file\n", 0, 0, 0 },
		      { 'f', "t", "t\n", 0, 0, 0 }, { 'h', "hl", "t", 0, 0, 0 }, { 'd', "same", NULL, 0, 0, 0 },
		      { 'f', "same/y", "y", 0, 0, 0 }, { 'f', "same", "now a file\n", 0, 0, 0 }),
	};
	char manifest[72], target[64] = {};
	_cleanup_free_ char *app = NULL;
	struct stat st;

	place_init(&p);
	make_layout(p.img, layers, 2, manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	app = xasprintf("%s/app", c.rootfs);
	ASSERT(lstat(app, &st) == 0 && S_ISLNK(st.st_mode));
	ASSERT(readlink(app, target, sizeof(target) - 1) > 0);
	ASSERT_STREQ(target, "/data");
	expect_file(c.rootfs, "conf", "a file\n", 0644, 0);
	expect_file(c.rootfs, "hl", "t\n", 0644, 0);
	expect_file(c.rootfs, "same", "now a file\n", 0644, 0);
	ASSERT_EQ(count_entries(p.sentinel, ""), 1);
	image_cached_clear(&c);
	place_done(&p);
}

static void bits_of(const char *rootfs, mode_t want)
{
	expect_file(rootfs, "bin/su", "suid\n", want, 0);
}

/* image_setuid and image_max_mib are part of what an entry is: an entry
 * unpacked under other settings is unpacked again, or, while a VM holds
 * it, refused. */
TEST(settings_part_of_the_entry)
{
	struct place p;
	struct image_cached c, c2;
	struct schema_errors e = {};
	struct image_unpack_opts with = { .allow_setuid = true }, without = {}, small = { .max_bytes = 4 };
	_cleanup_free_ char *want = NULL;
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &with, &c, &e), &e) == 0);
	bits_of(c.rootfs, 04755);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &without, &c2, &e), &e) == -EBUSY);
	want = xasprintf("image: the cache entry %s was unpacked with image_setuid; stop the VMs using it to unpack "
			 "it again",
			 c.key);
	ASSERT_STREQ(first_error(&e), want);
	schema_errors_clear(&e);
	bits_of(c.rootfs, 04755);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &without, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	check_two_layers(c.rootfs, false);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT(!c.unpacked);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &with, &c, &e), &e) == 0);
	ASSERT(c.unpacked);
	check_two_layers(c.rootfs, true);
	image_cached_clear(&c);
	/* What it holds is over the limit now: unpacked again, and refused. */
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &with, &c, &e), &e) == 0);
	ASSERT(!c.unpacked);
	small.allow_setuid = true;
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &small, &c2, &e), &e) == -EBUSY);
	schema_errors_clear(&e);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, &small, &c, &e), &e) == -EBADMSG);
	ASSERT(strstr(first_error(&e), "over the limit of 4"));
	schema_errors_clear(&e);
	check_contained(&p);
	place_done(&p);
}

/* What the unpacker's child is seen to hold, sampled while it runs. */
struct child_view {
	bool seen, holds; /* the last sample: holds an fd of (dev, ino) */
	unsigned long long blocked; /* the last sample's SigBlk */
};

/* The watcher: a process (a thread would make the unpacker's fork one of
 * a threaded process), sampling the other child of parent until stop
 * reads EOF, then writing what it saw last to out. */
_noreturn_ static void watch_child(pid_t parent, dev_t dev, ino_t ino, int stop, int out)
{
	_cleanup_free_ char *children = xasprintf("/proc/%d/task/%d/children", parent, parent);
	struct child_view v = {};
	char c;

	ASSERT(fcntl(stop, F_SETFL, O_NONBLOCK) == 0);
	while (read(stop, &c, 1) < 0 && errno == EAGAIN) {
		_cleanup_free_ char *list = NULL, *fds = NULL, *status = NULL, *text = NULL;
		bool holds = false, any = false;
		unsigned long long blocked;
		pid_t pid = 0;
		struct dirent *de;
		const char *b;
		DIR *d;
		int k = 0;

		if (read_file(children, 4096, &list, NULL) < 0)
			continue;
		for (const char *t = list; sscanf(t, "%d%n", &pid, &k) == 1 && pid == getpid(); t += k)
			pid = 0;
		if (pid <= 0)
			continue;
		fds = xasprintf("/proc/%d/fd", pid);
		status = xasprintf("/proc/%d/status", pid);
		d = opendir(fds);
		if (!d)
			continue;
		while ((de = readdir(d))) {
			_cleanup_free_ char *f = xasprintf("%s/%s", fds, de->d_name);
			struct stat st;

			if (de->d_name[0] == '.' || stat(f, &st) < 0)
				continue;
			any = true;
			holds |= st.st_dev == dev && st.st_ino == ino;
		}
		closedir(d);
		if (!any || read_file(status, 1 << 16, &text, NULL) < 0 || !(b = strstr(text, "\nSigBlk:")) ||
		    sscanf(b + 8, "%llx", &blocked) != 1)
			continue;
		v = (struct child_view){ .seen = true, .holds = holds, .blocked = blocked };
	}
	_exit(write(out, &v, sizeof(v)) == sizeof(v) ? 0 : 1);
}

/* The child that unpacks keeps only the tree, its pipe and the layers
 * (not the cache's other fds), and none of vmd run's blocked signals. */
TEST(unpacker_child_inherits_little)
{
	struct place p;
	const size_t files = 6000;
	struct ent *ents = calloc(files, sizeof(*ents));
	char **names = calloc(files, sizeof(char *));
	struct layer_spec spec = { .ents = ents, .n = files };
	_cleanup_free_ char *tar = NULL, *root = NULL;
	_cleanup_close_ int fd = -EBADF, rfd = -EBADF, other = -EBADF;
	struct unpack_layer l = { .label = "test" };
	struct unpack_opts o = {};
	struct schema_errors e = {};
	struct child_view v = {};
	sigset_t mask, old;
	struct stat st;
	uint64_t bytes;
	int stop[2], res[2], r, status;
	pid_t watcher;

	place_init(&p);
	for (size_t i = 0; i < files; i++) {
		names[i] = xasprintf("f%zu", i);
		ents[i] = (struct ent){ 'f', names[i], "x", 0, 0, 0 };
	}
	tar = xasprintf("%s/many.tar", p.img);
	root = xasprintf("%s/root", p.img);
	tar_write(tar, &spec);
	ASSERT(mkdir(root, 0755) == 0);
	rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fd = open(tar, O_RDONLY | O_CLOEXEC);
	other = open(p.sentinel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT(rfd >= 0 && fd >= 0 && other >= 0 && fstat(other, &st) == 0);
	l.fd = fd;
	ASSERT(pipe2(stop, O_CLOEXEC) == 0 && pipe2(res, O_CLOEXEC) == 0);
	watcher = fork();
	ASSERT(watcher >= 0);
	if (watcher == 0) {
		close(stop[1]);
		close(res[0]);
		watch_child(getppid(), st.st_dev, st.st_ino, stop[0], res[1]);
	}
	close(stop[0]);
	close(res[1]);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	ASSERT(sigprocmask(SIG_BLOCK, &mask, &old) == 0);
	r = unpack_layers(rfd, &l, 1, &o, &bytes, &e);
	ASSERT(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
	close(stop[1]);
	ASSERT(read(res[0], &v, sizeof(v)) == sizeof(v));
	close(res[0]);
	ASSERT(waitpid(watcher, &status, 0) == watcher && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT(shown(r, &e) == 0);
	ASSERT(v.seen);
	ASSERT(!v.holds);
	ASSERT_EQ(v.blocked, 0);
	for (size_t i = 0; i < files; i++)
		free(names[i]);
	free(names);
	free(ents);
	place_done(&p);
}

/* A tree deeper than removal can walk with the fds it has: refused. */
TEST(deep_paths_refused)
{
	struct place p;
	_cleanup_free_ char *deep = NULL, *ok = NULL, *tar = NULL, *root = NULL;
	_cleanup_close_ int fd = -EBADF, rfd = -EBADF;
	struct unpack_layer l = { .label = "test" };
	struct unpack_opts o = {};
	struct schema_errors e = {};
	uint64_t bytes;

	place_init(&p);
	deep = calloc(1, 2 * 257 + 1);
	for (size_t i = 0; i < 257; i++)
		strcat(deep, i ? "/d" : "d");
	ok = strndup(deep, 2 * 256 - 1);
	tar = xasprintf("%s/deep.tar", p.img);
	root = xasprintf("%s/root", p.img);
	ASSERT(mkdir(root, 0755) == 0);
	rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT(rfd >= 0);
	{
		const struct layer_spec fine = LAYER(0, { 'f', ok, "x", 0, 0, 0 });

		tar_write(tar, &fine);
		fd = open(tar, O_RDONLY | O_CLOEXEC);
		l.fd = fd;
		ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == 0);
	}
	{
		const struct layer_spec bad = LAYER(0, { 'f', deep, "x", 0, 0, 0 });

		safe_close(fd);
		tar_write(tar, &bad);
		fd = open(tar, O_RDONLY | O_CLOEXEC);
		l.fd = fd;
		ASSERT(shown(unpack_layers(rfd, &l, 1, &o, &bytes, &e), &e) == -EBADMSG);
		ASSERT(strstr(first_error(&e), ": deeper than 256 directories (refused)"));
		schema_errors_clear(&e);
	}
	place_done(&p);
}

/* Removal walks a deep tree with one fd per level. */
TEST(deep_tree_removed_with_few_fds)
{
	_cleanup_free_ char *base = tmpdir();
	_cleanup_close_ int top = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = dup(top), status;
	pid_t pid;

	ASSERT(top >= 0 && fd >= 0);
	for (size_t i = 0; i < 600; i++) {
		int sub;

		ASSERT(mkdirat(fd, "d", 0755) == 0);
		sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ASSERT(sub >= 0);
		close(fd);
		fd = sub;
	}
	close(fd);
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { 700, 700 };

		_exit(setrlimit(RLIMIT_NOFILE, &rl) < 0 ? 3 : rm_rf_children(top) < 0 ? 1 : 0);
	}
	ASSERT(waitpid(pid, &status, 0) == pid);
	ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_EQ(count_entries(base, ""), 0);
	rm_tree(base);
}

/* QEMU inherits the entry's lock fd: it needs no write access. */
TEST(entry_lock_read_only)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT((fcntl(c.lock_fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
	image_cached_clear(&c);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	ASSERT((fcntl(c.lock_fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
	image_cached_clear(&c);
	place_done(&p);
}

static void kind_docker(json_t *j)
{
	ASSERT(json_object_set_new(j, "kind", json_string("docker-archive")) == 0);
}

/* One key, two kinds of image: not the same image. */
TEST(entry_of_another_kind_refused)
{
	struct place p;
	struct image_cached c;
	struct schema_errors e = {};
	_cleanup_free_ char *key = NULL, *want = NULL;
	char manifest[72];

	place_init(&p);
	make_layout(p.img, two_layers, ELEMENTSOF(two_layers), manifest);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == 0);
	key = strdup(c.key);
	image_cached_clear(&c);
	entry_json_edit(p.cache, key, kind_docker);
	ASSERT(shown(image_cache_get(p.cache, p.img, NULL, NULL, &c, &e), &e) == -EEXIST);
	want = xasprintf("image: the cache entry %s was unpacked from a different kind of image", key);
	ASSERT_STREQ(first_error(&e), want);
	ASSERT(c.lock_fd < 0 && !c.key);
	schema_errors_clear(&e);
	ASSERT(exists(p.cache, key));
	place_done(&p);
}

RUN_TESTS(T(layout_unpacked_and_cached), T(setuid_kept_when_allowed), T(docker_archive), T(docker_archive_symlinked_layer),
	  T(hostile_layers_refused),
	  T(symlinks_replaced_not_followed), T(gzip_bomb_refused), T(digest_mismatch_refused), T(unpack_limits), T(partial_entries_rebuilt), T(list_and_remove),
	  T(user_resolved_in_the_image), T(cached_only), T(entry_json_of_a_deep_config),
	  T(unreadable_entry_in_use_kept), T(fingerprint_not_written_is_an_error), T(directory_replaced_by_non_directory),
	  T(settings_part_of_the_entry), T(unpacker_child_inherits_little), T(deep_paths_refused),
	  T(deep_tree_removed_with_few_fds), T(entry_lock_read_only), T(entry_of_another_kind_refused))
