/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Container images on the host (issue 14): reading an image in either
 * form, and the cache of unpacked root trees under <state_dir>/images:
 *
 *   .lock                  flock LOCK_EX while an entry is made or removed
 *   sha256-<hex>/          a complete entry, renamed into place when complete
 *      rootfs/             the flattened tree (served read-only to guests)
 *      image.json          written last: source, ref, kind, bytes, setuid,
 *                          config
 *      lock                LOCK_SH by every user (a VM), LOCK_EX by removal
 *   .tmp-<hex>-<random>/   partial: removed at the next get, never trusted
 *   sources/<hex>          docker-archive fingerprint -> key, so a cached
 *                          boot reads no archive
 *
 * The key of an OCI layout is its image manifest's digest; of a
 * docker-archive, its config file's sha256 (each layer then checked
 * against the config's rootfs.diff_ids). Written as "sha256-<64 hex>".
 * Errors are "FIELD: reason" lines (schema.h); library code prints
 * nothing. All directories are 0700 and opened with no symlink followed
 * below cache_dir. */

#include "oci.h"

enum image_kind { IMAGE_LAYOUT, IMAGE_DOCKER_ARCHIVE };

#define IMAGE_KEY_LEN (7 + 64) /* "sha256-" + hex */

struct image_info {
	char *key; /* "sha256-<64 hex>" */
	enum image_kind kind;
	struct oci_run run;
	bool complete; /* cache_dir/<key> is a complete entry */
};
void image_info_clear(struct image_info *i);

/* Reads the image at path: an OCI layout directory (ref: its
 * org.opencontainers.image.ref.name; NULL: the only manifest) or a
 * docker-archive file (tar, tar.gz or tar.zst; ref: a RepoTags entry).
 * For a docker-archive, a fingerprint in cache_dir/sources (device, inode,
 * size, mtime, ctime, path and ref of the file) that names a complete
 * entry answers without reading the archive. cache_dir may be NULL or
 * not exist yet. Nothing is written. */
int image_inspect(const char *path, const char *ref, const char *cache_dir, struct image_info *ret,
		  struct schema_errors *e);

struct image_unpack_opts {
	bool allow_setuid;  /* keep setuid/setgid bits (host setting image_setuid) */
	uint64_t max_bytes; /* declared sizes, per entry and in all (image_max_mib); 0: 8 GiB */
	/* Only take an entry that is complete, and only if the cache is not
	 * busy: -EAGAIN (with no error line) where image_cache_get() would
	 * wait for the cache's lock, unpack, or read a docker-archive it has
	 * no fingerprint of. For a caller that must not block (the daemon),
	 * which then has the rest done by another process and asks again. */
	bool cached_only;
};

struct image_cached {
	/* LOCK_SH on the entry's lock, O_RDONLY, O_CLOEXEC: whoever runs the image
	 * keeps it open (QEMU inherits it, passed explicitly) for as long
	 * as the tree is in use; image_cache_remove() refuses meanwhile. */
	int lock_fd;
	char *key;
	char *rootfs; /* cache_dir/<key>/rootfs */
	struct oci_run run;
	uint64_t bytes;  /* the unpacked entries' declared sizes */
	bool unpacked;   /* true: unpacked by this call; false: it was cached */
};
void image_cached_clear(struct image_cached *c); /* closes lock_fd */
/* "image KEY: unpacked N.N MiB in T.TT s" (unpacked: it took took_usec)
 * or "image KEY: cached", as vmd says it wherever an image is got. */
char *image_cached_summary(const struct image_cached *c, bool unpacked, uint64_t took_usec);

/* Makes sure cache_dir/<key>/rootfs is complete and takes LOCK_SH on it.
 * Holds cache_dir/.lock LOCK_EX throughout: one get or removal at a time
 * per host. Removes stale .tmp-* entries; an entry with no image.json, or
 * one that does not read, is partial: removed and built again, unless
 * someone holds its lock (a VM runs on its tree): then -EBUSY, "image: the
 * cache entry KEY is in use and cannot be rebuilt". Unpacks (unpack.h's
 * rules) into a .tmp- directory, then renames it into place. For a
 * docker-archive, its fingerprint is written to sources/: failing that is
 * an error (the entry stays, complete), since a cached_only get would not
 * find the entry without it. An entry is also built again when it was
 * unpacked with another image_setuid than opts->allow_setuid, or holds
 * more than opts->max_bytes; while in use: -EBUSY, "image: the cache
 * entry KEY was unpacked with image_setuid; stop the VMs using it to
 * unpack it again". An entry at the key that was unpacked from the other
 * kind of image (a text valid as both a manifest and a config) is not
 * this image: -EEXIST, "image: the cache entry KEY was unpacked from a
 * different kind of image". cache_dir is created (0700, its parent must exist).
 * opts->cached_only: see there (an entry to build again: -EAGAIN). */
int image_cache_get(const char *cache_dir, const char *path, const char *ref, const struct image_unpack_opts *opts,
		    struct image_cached *ret, struct schema_errors *e);

struct image_cache_entry {
	char *key;
	char *source; /* the path it was unpacked from */
	char *ref;    /* NULL: none given */
	enum image_kind kind;
	uint64_t bytes;
	bool in_use;  /* someone holds LOCK_SH on its lock */
};
void image_cache_entries_free(struct image_cache_entry *l, size_t n);
/* The complete entries, sorted by key. A missing cache_dir is empty.
 * in_use is tested with LOCK_EX|LOCK_NB, which a concurrent removal may
 * see for that instant (and say -EBUSY). */
int image_cache_list(const char *cache_dir, struct image_cache_entry **ret, size_t *ret_n);
/* Removes the entry key: -EBUSY if in use, -ENOENT if absent, -EINVAL if
 * key is not "sha256-<64 hex>". The entry is first renamed to a .tmp- name
 * (a crash leaves a partial, removed at the next get), then deleted with
 * unlinkat() below directories opened O_NOFOLLOW: the tree's symlinks are
 * removed, never followed. The sources/ fingerprints naming it go too. */
int image_cache_remove(const char *cache_dir, const char *key);

/* The image's User (OCI config: "", "name", "uid", "name:group",
 * "uid:gid", "name:gid", "uid:group") as numbers, names resolved against
 * the tree's own etc/passwd and etc/group, opened with RESOLVE_IN_ROOT
 * (a symlink there, as in Nix images, resolves inside the tree). NULL or
 * "": 0:0. The gid is the passwd entry's unless a group is given (a uid
 * with no passwd entry: 0). Supplementary groups: those etc/group lists
 * the user's name in, when no group is given (as runc does); *groups
 * NULL when none. Errors: "user: no user NAME in the image's
 * /etc/passwd", "user: no group NAME in the image's /etc/group". */
int image_resolve_user(int rootfs_dirfd, const char *user, uid_t *uid, gid_t *gid, gid_t **groups,
		       size_t *n_groups, struct schema_errors *e);
