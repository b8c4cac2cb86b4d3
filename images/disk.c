/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "disk.h"
#include "child.h"

/* The directory path lives in, opened with no symlink below root_len
 * (open_below()), and path's last component. */
static int open_parent(const char *path, size_t root_len, int *ret_dirfd, const char **ret_name)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	int fd;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir || (size_t)(slash - dir) < root_len)
		return -EINVAL;
	*slash = 0;
	fd = open_below(dir, root_len, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return fd;
	*ret_dirfd = fd;
	*ret_name = path + (slash - dir) + 1;
	return 0;
}

static int open_tmpfile(int dirfd)
{
	int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
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

/* Gives the finished unnamed file fd its name in dirfd. */
static int link_into_place(int fd, int dirfd, const char *name, bool replace)
{
	char fdpath[64];

	if (fsync(fd) < 0)
		return -errno;
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	if (replace && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	if (linkat(AT_FDCWD, fdpath, dirfd, name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return 0;
}

/* e2fsprogs' tools are not in root's PATH on some systems. */
static int find_e2fs_tool(const char *name, char **ret)
{
	_cleanup_free_ char *sbin = NULL;
	int r = find_executable(name, ret);

	if (r != -ENOENT)
		return r;
	sbin = path_join("/sbin", name);
	return sbin ? find_executable(sbin, ret) : -ENOMEM;
}

int disk_create(const char *path, size_t root_len, enum disk_kind kind, uint64_t size_mib, const char *label,
		bool *ret_created, char **ret_why)
{
	_cleanup_free_ char *mkfs = NULL, *out = NULL;
	_cleanup_close_ int fd = -EBADF, dirfd = -EBADF;
	const char *name;
	struct stat st;
	int r;

	if (ret_created)
		*ret_created = false;
	r = open_parent(path, root_len, &dirfd, &name);
	if (r < 0)
		return r;
	if (kind == DISK_PERSISTENT) {
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!S_ISREG(st.st_mode))
				return -EEXIST;
			return 0;
		}
		if (errno != ENOENT)
			return -errno;
	}

	r = find_e2fs_tool("mkfs.ext4", &mkfs);
	if (r < 0)
		return r;

	fd = open_tmpfile(dirfd);
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
	r = link_into_place(fd, dirfd, name, kind == DISK_EPHEMERAL);
	if (r == 0 && ret_created)
		*ret_created = true;
	return r;
}

int disk_create_overlay(const char *path, size_t root_len, const char *base, const char *base_format,
			uint64_t size_mib, char **ret_why)
{
	_cleanup_free_ char *qemu_img = NULL, *out = NULL, *size = NULL;
	_cleanup_close_ int fd = -EBADF, dirfd = -EBADF;
	const char *name;
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
	r = open_parent(path, root_len, &dirfd, &name);
	if (r < 0)
		return r;
	fd = open_tmpfile(dirfd);
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
	return link_into_place(fd, dirfd, name, true);
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

#define MIB (UINT64_C(1024) * 1024)

/* ext2/3/4: the magic 0xEF53 at byte 56 of the superblock, at byte 1024. */
static bool holds_ext(int fd)
{
	uint8_t m[2];

	return pread(fd, m, sizeof(m), 1024 + 56) == sizeof(m) && m[0] == 0x53 && m[1] == 0xef;
}

/* Runs an e2fsprogs tool on the image behind fd (as /proc/self/fd/3, the
 * last argument); args are the ones before it. */
static int run_e2fs(const char *tool, const char *const *args, size_t n_args, int fd, char **ret_why)
{
	_cleanup_free_ char *bin = NULL, *out = NULL;
	_cleanup_strv_free_ char **argv = NULL;
	struct spawn_fd pass = { fd, 3 };
	int r = find_e2fs_tool(tool, &bin);

	if (r < 0)
		return r;
	r = strv_extend(&argv, bin);
	for (size_t i = 0; r >= 0 && i < n_args; i++)
		r = strv_extend(&argv, args[i]);
	if (r >= 0)
		r = strv_extend(&argv, "/proc/self/fd/3");
	if (r < 0)
		return r;
	/* A check of a big volume takes a while; a hung one must not. */
	r = child_run(argv, SANDBOX_TOOL, &pass, 1, 600 * USEC_PER_SEC, 8192, &out);
	if (r != 0 && ret_why && !*ret_why)
		*ret_why = last_line(out);
	return r;
}

/* Puts a grow that vmd did not finish back: its file system as the undo
 * log had it, the image at its old size. */
static int grow_undo(int fd, const char *undo, uint64_t old_size)
{
	const char *args[] = { undo };

	if (access(undo, F_OK) == 0) {
		/* An undo log that resize2fs never wrote to is empty:
		 * nothing to put back, and e2undo says so. */
		(void)run_e2fs("e2undo", args, 1, fd, NULL);
		if (unlink(undo) < 0 && errno != ENOENT)
			return -errno;
	}
	if (ftruncate(fd, (off_t)old_size) < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

static int read_marker(const char *marker, uint64_t *ret)
{
	_cleanup_free_ char *text = NULL;
	int r = read_file(marker, 64, &text, NULL);

	char *end;

	if (r < 0)
		return r;
	errno = 0;
	*ret = strtoull(text, &end, 10);
	return errno || end == text || *end != 0 ? -EBADMSG : 0;
}

int disk_grow(const char *path, size_t root_len, uint64_t size_mib, uint64_t *ret_old_mib, bool *ret_fs,
	      char **ret_why)
{
	_cleanup_free_ char *dir = strdup(path), *marker = NULL, *undo = NULL, *old_text = NULL;
	_cleanup_close_ int fd = -EBADF;
	uint64_t want = size_mib * MIB, old;
	const char *base;
	struct stat st;
	int r;

	*ret_old_mib = 0;
	*ret_fs = false;
	if (!dir)
		return -ENOMEM;
	base = strrchr(path, '/');
	if (!base || base == path)
		return -EINVAL;
	base++;
	dir[base - path - 1] = 0;
	marker = xasprintf("%s/.%s.grow", dir, base);
	undo = xasprintf("%s/.%s.undo", dir, base);
	if (!marker || !undo)
		return -ENOMEM;

	/* No symlink on the way, a regular file, one link. */
	fd = disk_open(path, root_len);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;

	/* A grow that was cut short (a crash, a kill) is undone first and
	 * then done again from the start. */
	r = read_marker(marker, &old);
	if (r == 0) {
		r = grow_undo(fd, undo, old);
		if (r < 0)
			return r;
		if (unlink(marker) < 0)
			return -errno;
		st.st_size = (off_t)old;
	} else if (r != -ENOENT)
		return r;

	*ret_old_mib = (uint64_t)st.st_size / MIB;
	if ((uint64_t)st.st_size == want)
		return 0;
	if ((uint64_t)st.st_size > want)
		return -EFBIG;

	/* Not ext (the guest made its own file system): only the image
	 * grows; the guest grows what is on it. */
	if (!holds_ext(fd)) {
		if (ftruncate(fd, (off_t)want) < 0 || fsync(fd) < 0)
			return -errno;
		return 1;
	}
	*ret_fs = true;

	/* resize2fs wants a freshly checked file system. -p repairs only
	 * what is safe without a human; anything else stops the grow before
	 * it touched a byte. */
	{
		const char *args[] = { "-f", "-p" };

		r = run_e2fs("e2fsck", args, ELEMENTSOF(args), fd, ret_why);
		if (r < 0)
			return r;
		if (r > 1)
			return -EUCLEAN;
	}

	old_text = xasprintf("%" PRIu64, (uint64_t)st.st_size);
	if (!old_text)
		return -ENOMEM;
	(void)unlink(undo);
	r = write_file(marker, old_text, 0600, WRITE_FILE_NOREPLACE | WRITE_FILE_SYNC);
	if (r < 0)
		return r;
	if (ftruncate(fd, (off_t)want) < 0) {
		r = -errno;
		(void)unlink(marker);
		return r;
	}
	{
		/* -z: every block it changes is logged first, so a failure
		 * halfway is put back byte for byte. */
		const char *args[] = { "-z", undo };

		r = run_e2fs("resize2fs", args, ELEMENTSOF(args), fd, ret_why);
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r != 0) {
		int u = grow_undo(fd, undo, (uint64_t)st.st_size);

		if (u == 0)
			(void)unlink(marker);
		return r < 0 ? r : -EIO;
	}
	if (unlink(undo) < 0 || unlink(marker) < 0)
		return -errno;
	return 1;
}

int disk_size(const char *path, size_t root_len, uint64_t *ret_bytes)
{
	/* Read-only: a running QEMU may hold it. */
	_cleanup_close_ int fd = open_below(path, root_len, O_RDONLY | O_NOCTTY | O_NONBLOCK);
	struct stat st;

	if (fd == -EISDIR)
		return -EBADFD;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	*ret_bytes = (uint64_t)st.st_size;
	return 0;
}

int disk_check_tools(bool overlay, bool persistent, const char **ret_missing)
{
	static const char *const mkfs[] = { "mkfs.ext4" }, *const grow[] = { "mkfs.ext4", "e2fsck", "resize2fs", "e2undo" };
	const char *const *need = persistent ? grow : mkfs;
	size_t n = persistent ? ELEMENTSOF(grow) : ELEMENTSOF(mkfs);

	*ret_missing = NULL;
	if (overlay) {
		_cleanup_free_ char *bin = NULL;
		int r = find_executable("qemu-img", &bin);

		if (r < 0)
			*ret_missing = "qemu-img";
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *bin = NULL;
		int r = find_e2fs_tool(need[i], &bin);

		if (r < 0) {
			*ret_missing = need[i];
			return r;
		}
	}
	return 0;
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
