/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/openat2.h>

#include "beneath.h"

/* One component below dirfd, no symlink at it. A directory on the way is
 * opened O_PATH; with O_NOFOLLOW, a symlink there would open as the link
 * itself and fail O_DIRECTORY with ENOTDIR: say ELOOP as openat2 does. */
static int open_component(int dirfd, const char *name, int flags)
{
	struct stat st;
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno == ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return -ELOOP;
	return -errno;
}

int open_beneath_walk(int dirfd, const char *path, int flags)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int cur = -EBADF;
	char *save = NULL, *name, *next;

	if (!copy)
		return -ENOMEM;
	if (path[0] == '/')
		return -EXDEV;
	if (flags & O_CREAT)
		return -EINVAL;
	name = strtok_r(copy, "/", &save);
	while (name && streq(name, "."))
		name = strtok_r(NULL, "/", &save);
	if (!name)
		return open_component(dirfd, ".", flags);
	for (;;) {
		int fd;

		next = strtok_r(NULL, "/", &save);
		while (next && streq(next, "."))
			next = strtok_r(NULL, "/", &save);
		if (streq(name, ".."))
			return -EXDEV;
		fd = open_component(cur >= 0 ? cur : dirfd, name, next ? O_PATH | O_DIRECTORY : flags);
		if (fd < 0 || !next)
			return fd;
		safe_close(cur);
		cur = fd;
		name = next;
	}
}

int open_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	if (flags & O_CREAT)
		return -EINVAL;
	fd = (int)syscall(SYS_openat2, dirfd, path[0] ? path : ".", &how, sizeof(how));
	if (fd >= 0)
		return fd;
	if (errno == ENOSYS) /* before Linux 5.6 */
		return open_beneath_walk(dirfd, path, flags);
	return -errno;
}

int open_below(const char *path, size_t root_len, int flags)
{
	_cleanup_free_ char *root = root_len ? strndup(path, root_len) : strdup("/");
	_cleanup_close_ int dirfd = -EBADF;
	const char *rel = path + root_len;

	if (!root)
		return -ENOMEM;
	if (root_len > strlen(path))
		return -EINVAL;
	dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	while (*rel == '/')
		rel++;
	return open_beneath(dirfd, rel, flags);
}

int read_beneath(int dirfd, const char *path, size_t max, char **ret, size_t *ret_size)
{
	_cleanup_close_ int fd = open_beneath(dirfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);

	return read_fd_regular(fd, max, ret, ret_size);
}
