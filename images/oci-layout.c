/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <sys/stat.h>

#include "beneath.h"
#include "oci.h"

/* A regular file below dirfd (no symlink on the way, nothing blocking), of
 * at most max bytes. */
static int read_below(int dirfd, const char *name, size_t max, char **ret, size_t *ret_n, struct schema_errors *e)
{
	int r = read_beneath(dirfd, name, max, ret, ret_n);

	if (r == -ELOOP)
		schema_error(e, name, "a symlink (refused)");
	else if (r == -EBADFD)
		schema_error(e, name, "not a regular file");
	else if (r == -EFBIG)
		schema_error(e, name, "larger than %zu bytes", max);
	else if (r < 0)
		schema_error(e, name, "%s", strerror(-r));
	return r;
}

static void blob_name(const char *digest, char buf[static 80])
{
	snprintf(buf, 80, "blobs/sha256/%s", digest + 7);
}

/* A blob named by its digest: read, and its content hashed to that digest. */
static int read_blob(int dirfd, const char *digest, uint64_t size, char **ret, size_t *ret_n,
		     struct schema_errors *e)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char name[80], hex[2 * crypto_hash_sha256_BYTES + 1];
	int r;

	blob_name(digest, name);
	r = read_below(dirfd, name, OCI_MAX_JSON, ret, ret_n, e);
	if (r < 0)
		return r;
	if (sodium_init() < 0)
		return -EIO;
	crypto_hash_sha256(h, (const unsigned char *)*ret, *ret_n);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	if (!streq(hex, digest + 7) || (size != UINT64_MAX && size != *ret_n)) {
		schema_error(e, name, "%s", !streq(hex, digest + 7) ? "its content does not match its digest (sha256)"
								  : "its size is not the one its descriptor gives");
		*ret = mfree(*ret);
		return -EBADMSG;
	}
	return 0;
}

int oci_load_layout(const char *dir, const char *ref, struct oci_image *img, struct schema_errors *e)
{
	_cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *layout = NULL, *index = NULL, *manifest = NULL, *config = NULL, *mdigest = NULL;
	size_t n;
	int r;

	if (dirfd < 0) {
		schema_error(e, "image", "%s: %s", dir, strerror(errno));
		return -errno;
	}
	r = read_below(dirfd, "oci-layout", 4096, &layout, &n, e);
	if (r < 0)
		return r;
	{
		json_t *j = json_loadb(layout, n, JSON_REJECT_DUPLICATES, NULL);
		const char *v = json_string_value(json_object_get(j, "imageLayoutVersion"));
		bool ok = v && streq(v, "1.0.0");

		json_decref(j);
		if (!ok) {
			schema_error(e, "oci-layout", "imageLayoutVersion: must be \"1.0.0\"");
			return -EINVAL;
		}
	}
	r = read_below(dirfd, "index.json", OCI_MAX_JSON, &index, &n, e);
	if (r == 0)
		r = oci_parse_index(index, n, ref, &mdigest, e);
	/* The manifest's size is not checked against the index's: the digest
	 * already pins its content. */
	if (r == 0)
		r = read_blob(dirfd, mdigest, UINT64_MAX, &manifest, &n, e);
	if (r == 0)
		r = oci_parse_manifest(manifest, n, img, e);
	if (r < 0)
		return r;
	r = read_blob(dirfd, img->config_digest, img->config_size, &config, &n, e);
	if (r == 0)
		r = oci_parse_config(config, n, img, e);
	/* Optional in a layout: each layer blob is checked against its own
	 * digest. When given, they must match the manifest's layers. */
	if (r == 0)
		r = oci_check_diff_ids(img, false, e);
	if (r < 0)
		return r;
	img->manifest_digest = TAKE_PTR(mdigest);
	/* Layers are read (and hashed) when they are unpacked; here only
	 * whether they are there, as big as the manifest says. */
	for (size_t i = 0; i < img->n_layers; i++) {
		char name[80];
		_cleanup_close_ int fd = -EBADF;
		struct stat st;

		blob_name(img->layers[i].digest, name);
		fd = open_beneath(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY);
		if (fd < 0) {
			schema_error(e, name, "%s", fd == -ELOOP ? "a symlink (refused)" : strerror(-fd));
			return fd;
		}
		if (fstat(fd, &st) < 0)
			return -errno;
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != img->layers[i].size) {
			schema_error(e, name, "%s", !S_ISREG(st.st_mode) ? "not a regular file" :
					   "its size is not the one the manifest gives");
			return -EBADMSG;
		}
	}
	return 0;
}
