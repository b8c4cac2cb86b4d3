/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "keydir.h"
#include "log.h"
#include "util.h"
#include "wgkey.h"

/* Opens (creating it if missing and create is set) the directory name
 * below dirfd without following a symlink at the last step. */
static int open_dir_at(int dirfd, const char *name, bool create)
{
	int fd;

	if (create && mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	return fd;
}

static int open_key_dir(const char *keys_dir, const char *vm, const struct keydir_key *k, bool create,
			char **ret_path)
{
	_cleanup_free_ char *path = NULL, *parent = NULL;
	_cleanup_close_ int top = -EBADF, vmfd = -EBADF, fd = -EBADF;
	int r;

	if (k->source) {
		char *slash;

		path = strdup(k->source);
		parent = strdup(k->source);
		if (!path || !parent)
			return -ENOMEM;
		slash = strrchr(parent, '/');
		slash[slash == parent ? 1 : 0] = 0;
		top = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (top < 0)
			return -errno;
		fd = open_dir_at(top, strrchr(path, '/') + 1, create);
	} else {
		if (create) {
			r = mkdir_p(keys_dir, 0700);
			if (r < 0)
				return r;
		}
		top = open(keys_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (top < 0)
			return -errno;
		vmfd = open_dir_at(top, vm, create);
		if (vmfd < 0)
			return vmfd;
		fd = open_dir_at(vmfd, k->name, create);
		path = xasprintf("%s/%s/%s", keys_dir, vm, k->name);
		if (!path)
			return -ENOMEM;
	}
	if (fd >= 0)
		*ret_path = TAKE_PTR(path);
	return TAKE_FD(fd);
}

int keydir_prepare(const char *keys_dir, const char *vm, const struct keydir_key *k, char **ret_path, int *ret_fd)
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -EBADF;
	const char *shown = k->source ? k->source : keys_dir;
	struct stat st;
	int r;

	fd = open_key_dir(keys_dir, vm, k, true, &path);
	/* Secrets are handed over only from a real directory: a symlink could
	 * point the guest at any host directory. */
	if (fd == -ENOTDIR)
		return log_error_errno(ENOTDIR, "%s: key %s: %s%s is not a directory (symlinks are refused)", vm,
				       k->name, shown, k->source ? "" : "/...");
	if (fd < 0)
		return log_error_errno(fd, "%s: key %s: preparing the key directory under %s: %m", vm, k->name,
				       shown);
	if (fstat(fd, &st) < 0)
		return log_error_errno(errno, "%s: key %s: %s: %m", vm, k->name, path);
	if (st.st_mode & 0077)
		log_warning("%s: key %s: %s is accessible to group or others (mode %04o); it holds secrets", vm,
			    k->name, path, (unsigned)(st.st_mode & 07777));

	if (k->wireguard) {
		bool created;

		r = wg_keydir_ensure(fd, &created);
		if (r == -EBADMSG)
			return log_error_errno(r, "%s: key %s: %s/privatekey is not a WireGuard private key; "
					       "vmd never replaces one, fix or remove it by hand", vm, k->name, path);
		if (r < 0)
			return log_error_errno(r, "%s: key %s: generating a WireGuard key in %s: %m", vm, k->name, path);
		if (created)
			log_info("%s: key %s: generated a WireGuard key in %s", vm, k->name, path);
	}
	*ret_path = TAKE_PTR(path);
	if (ret_fd)
		*ret_fd = TAKE_FD(fd);
	return 0;
}

int keydir_wg_public(const char *keys_dir, const char *vm, const struct keydir_key *k, uint8_t pub[WG_KEY_LEN])
{
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = open_key_dir(keys_dir, vm, k, false, &path);

	if (fd < 0)
		return fd;
	return wg_keydir_public(fd, pub);
}

