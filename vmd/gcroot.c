/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <limits.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>

#include "gcroot.h"
#include "log.h"
#include "schema.h"
#include "util.h"

/* "vmd-" and 32 hex digits of a 128-bit BLAKE2b of LINK. */
#define REG_NAME_MAX (4 + 32 + 1)

static int registration_name(const char *link, char name[REG_NAME_MAX])
{
	unsigned char h[16];

	if (sodium_init() < 0)
		return -EIO;
	crypto_generichash(h, sizeof(h), (const unsigned char *)link, strlen(link), NULL, 0);
	memcpy(name, "vmd-", 4);
	sodium_bin2hex(name + 4, 33, h, sizeof(h));
	return 0;
}

/* NAME in DIRFD becomes a symlink to TARGET, whatever NAME was before (a
 * symlink or nothing; anything else is not ours: -EEXIST). */
static int symlink_replace(int dirfd, const char *name, const char *target)
{
	char tmp[NAME_MAX + 1];
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISLNK(st.st_mode))
		return -EEXIST;
	if (snprintf(tmp, sizeof(tmp), ".%.200s.%d.new", name, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	(void)unlinkat(dirfd, tmp, 0);
	if (symlinkat(target, dirfd, tmp) < 0)
		return -errno;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		int r = -errno;

		(void)unlinkat(dirfd, tmp, 0);
		return r;
	}
	return 0;
}

static int unlink_symlink(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISLNK(st.st_mode))
		return -EEXIST; /* not a root of ours: leave it */
	return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Splits an absolute LINK into its directory, opened, and its last name. */
static int open_parent(const char *link, const char **ret_name)
{
	_cleanup_free_ char *dir = NULL;
	const char *slash = strrchr(link, '/');
	int fd;

	if (!slash || link[0] != '/' || !slash[1])
		return -EINVAL;
	dir = slash == link ? strdup("/") : strndup(link, (size_t)(slash - link));
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret_name = slash + 1;
	return fd;
}

static int open_gcroots(const char *gcroots_dir)
{
	int fd = open(gcroots_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int gcroot_add(const char *gcroots_dir, const char *link, const char *target)
{
	_cleanup_close_ int gfd = -EBADF, lfd = -EBADF;
	char reg[REG_NAME_MAX];
	const char *name;
	int r;

	gfd = open_gcroots(gcroots_dir);
	if (gfd < 0)
		return gfd;
	r = registration_name(link, reg);
	if (r < 0)
		return r;
	lfd = open_parent(link, &name);
	if (lfd < 0)
		return lfd;
	/* The link first: a registration never points at nothing for long. */
	r = symlink_replace(lfd, name, target);
	if (r < 0)
		return r;
	r = symlink_replace(gfd, reg, link);
	if (r < 0)
		(void)unlinkat(lfd, name, 0);
	return r;
}

int gcroot_remove(const char *gcroots_dir, const char *link)
{
	_cleanup_close_ int gfd = -EBADF, lfd = -EBADF;
	char reg[REG_NAME_MAX];
	const char *name;
	int r = 0, q;

	lfd = open_parent(link, &name);
	if (lfd >= 0)
		r = unlink_symlink(lfd, name);
	else if (lfd != -ENOENT)
		r = lfd;
	gfd = open_gcroots(gcroots_dir);
	if (gfd == -ENOENT)
		return r;
	if (gfd < 0)
		return r < 0 ? r : gfd;
	q = registration_name(link, reg);
	if (q == 0)
		q = unlink_symlink(gfd, reg);
	return r < 0 ? r : q;
}

int gcroot_sync_dir(const char *gcroots_dir, const char *dir, char *const *names, char *const *targets,
		    size_t n)
{
	_cleanup_close_ int gfd = open_gcroots(gcroots_dir);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (gfd < 0)
		return gfd;
	r = mkdir_p(dir, 0755);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *link = path_join(dir, names[i]);
		int q = link ? gcroot_add(gcroots_dir, link, targets[i]) : -ENOMEM;

		if (q < 0 && r == 0)
			r = q;
	}
	d = opendir(dir);
	if (!d)
		return r < 0 ? r : -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *link = NULL;
		bool wanted = false;

		/* Only names vmd could have made; anything else is not ours. */
		if (check_name(de->d_name))
			continue;
		for (size_t i = 0; i < n && !wanted; i++)
			wanted = streq(names[i], de->d_name);
		if (wanted)
			continue;
		link = path_join(dir, de->d_name);
		int q = link ? gcroot_remove(gcroots_dir, link) : -ENOMEM;

		/* -EEXIST: not a symlink, so not a root vmd made. */
		if (q < 0 && q != -EEXIST && r == 0)
			r = q;
	}
	closedir(d);
	return r;
}
