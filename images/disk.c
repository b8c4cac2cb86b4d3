/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "beneath.h"
#include "disk.h"
#include "child.h"

static int open_tmpfile(const char *path, char **ret_dir)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	int fd;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return -EINVAL;
	*slash = 0;
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	*ret_dir = TAKE_PTR(dir);
	return fd;
}

static char *last_line(const char *s)
{
	const char *end, *start;

	if (!s)
		return NULL;
	end = s + strlen(s);
	while (end > s && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	return strndup(start, (size_t)(end - start));
}

/* Gives the finished unnamed file fd its name. */
static int link_into_place(int fd, const char *path, bool replace)
{
	char fdpath[64];

	if (fsync(fd) < 0)
		return -errno;
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	if (replace && unlink(path) < 0 && errno != ENOENT)
		return -errno;
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, path, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return 0;
}

int disk_create(const char *path, enum disk_kind kind, uint64_t size_mib, const char *label,
		bool *ret_created, char **ret_why)
{
	_cleanup_free_ char *dir = NULL, *mkfs = NULL, *out = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	if (ret_created)
		*ret_created = false;
	if (kind == DISK_PERSISTENT) {
		if (lstat(path, &st) == 0) {
			if (!S_ISREG(st.st_mode))
				return -EEXIST;
			return 0;
		}
		if (errno != ENOENT)
			return -errno;
	}

	r = find_executable("mkfs.ext4", &mkfs);
	if (r == -ENOENT) {
		/* Not in root's PATH on some systems. */
		free(mkfs);
		mkfs = NULL;
		r = find_executable("/sbin/mkfs.ext4", &mkfs);
	}
	if (r < 0)
		return r;

	fd = open_tmpfile(path, &dir);
	if (fd < 0)
		return fd;
	if (ftruncate(fd, (off_t)(size_mib * 1024 * 1024)) < 0)
		return -errno;

	/* mkfs works on the unnamed file through fd 3; ephemeral disks need
	 * no journal since nothing on them outlives a crash anyway. */
	{
		char *argv_eph[] = { mkfs, "-q", "-F", "-m", "0", "-L", (char *)label, "-O", "^has_journal", "/proc/self/fd/3", NULL };
		char *argv_per[] = { mkfs, "-q", "-F", "-m", "0", "-L", (char *)label, "/proc/self/fd/3", NULL };
		struct spawn_fd pass = { fd, 3 };

		r = child_run(kind == DISK_EPHEMERAL ? argv_eph : argv_per, SANDBOX_TOOL, &pass, 1,
			      120 * USEC_PER_SEC, 8192, &out);
	}
	if (r != 0) {
		if (ret_why)
			*ret_why = last_line(out);
		if (r > 0)
			return out && strstr(out, "No space left") ? -ENOSPC : -EIO;
		return r;
	}
	r = link_into_place(fd, path, kind == DISK_EPHEMERAL);
	if (r == 0 && ret_created)
		*ret_created = true;
	return r;
}

int disk_create_overlay(const char *path, const char *base, const char *base_format, uint64_t size_mib,
			char **ret_why)
{
	_cleanup_free_ char *dir = NULL, *qemu_img = NULL, *out = NULL, *size = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	/* qemu-img would give a worse message, and QEMU later a worse one. */
	if (stat(base, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -EINVAL;

	r = find_executable("qemu-img", &qemu_img);
	if (r < 0)
		return r;
	if (size_mib > 0) {
		size = xasprintf("%" PRIu64 "M", size_mib);
		if (!size)
			return -ENOMEM;
	}
	fd = open_tmpfile(path, &dir);
	if (fd < 0)
		return fd;
	{
		char *argv[] = { qemu_img, "create", "-q", "-f", "qcow2", "-F", (char *)base_format,
				 "-b", (char *)base, "/proc/self/fd/3", size, NULL };
		struct spawn_fd pass = { fd, 3 };

		r = child_run(argv, SANDBOX_TOOL, &pass, 1, 60 * USEC_PER_SEC, 8192, &out);
	}
	if (r != 0) {
		if (ret_why)
			*ret_why = last_line(out);
		if (r > 0)
			return out && strstr(out, "No space left") ? -ENOSPC : -EIO;
		return r;
	}
	return link_into_place(fd, path, true);
}

int disk_remove(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return -EPERM;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int disk_open(const char *path, size_t root_len)
{
	/* Non-blocking: a FIFO or a device put there must not hang vmd. */
	_cleanup_close_ int fd = open_below(path, root_len, O_RDWR | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	int r;

	if (fd == -EISDIR)
		return -EBADFD;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	if (st.st_nlink != 1)
		return -EMLINK;
	r = fd_nonblock(fd, false);
	return r < 0 ? r : TAKE_FD(fd);
}
