/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "util.h"

usec_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

usec_t now_realtime_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (usec_t)ts.tv_sec * USEC_PER_SEC + (usec_t)ts.tv_nsec / 1000;
}

void strv_free(char **l)
{
	if (!l)
		return;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
}

bool strv_contains(char *const *l, const char *s)
{
	for (; l && *l; l++)
		if (streq(*l, s))
			return true;
	return false;
}

size_t strv_length(char *const *l)
{
	size_t n = 0;

	while (l && l[n])
		n++;
	return n;
}

int strv_consume(char ***l, char *s)
{
	size_t n = strv_length(*l);
	char **m;

	if (!s)
		return -ENOMEM;
	m = realloc(*l, (n + 2) * sizeof(char *));
	if (!m) {
		free(s);
		return -ENOMEM;
	}
	m[n] = s;
	m[n + 1] = NULL;
	*l = m;
	return 0;
}

int strv_extend(char ***l, const char *s)
{
	return strv_consume(l, strdup(s));
}

int strv_extendf(char ***l, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return s ? strv_consume(l, s) : -ENOMEM;
}

char **strv_copy(char *const *l)
{
	char **c = calloc(strv_length(l) + 1, sizeof(char *));

	if (!c)
		return NULL;
	for (size_t i = 0; l && l[i]; i++) {
		c[i] = strdup(l[i]);
		if (!c[i]) {
			strv_free(c);
			return NULL;
		}
	}
	return c;
}

char *strv_join(char *const *l, const char *sep)
{
	size_t len = 1, seplen = strlen(sep);
	char *s, *p;

	for (size_t i = 0; l && l[i]; i++)
		len += strlen(l[i]) + seplen;
	s = p = malloc(len);
	if (!s)
		return NULL;
	*p = 0;
	for (size_t i = 0; l && l[i]; i++) {
		if (i > 0)
			p = stpcpy(p, sep);
		p = stpcpy(p, l[i]);
	}
	return s;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *s;

	return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a);

	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	return xasprintf("%.*s/%s", (int)la, a, b);
}

bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Removes everything below fd, and closes it: one fd per level (the
 * directory's stream), so a deep tree is removed with few fds. */
static int rm_rf_below(int fd, dev_t dev)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int r = 0;

	if (!d) {
		r = -errno;
		safe_close(fd);
		return r;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				r = -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub, q;

			if (st.st_dev != dev) {
				r = -EBUSY;
				continue;
			}
			sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				r = -errno;
				continue;
			}
			q = rm_rf_below(sub, dev);
			if (q < 0)
				r = q;
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				r = -errno;
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			r = -errno;
	}
	closedir(d);
	return r;
}

/* Removes everything below dirfd without following symlinks or crossing
 * into other mounts. */
int rm_rf_children(int dir_fd)
{
	struct stat root;
	int fd;

	if (fstat(dir_fd, &root) < 0)
		return -errno;
	fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return rm_rf_below(fd, root.st_dev);
}

int open_regular(const char *path, int flags, mode_t mode)
{
	_cleanup_close_ int fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
	struct stat st;

	/* O_NONBLOCK: opening a FIFO waits for a writer, a device may wait
	 * too. ENXIO: a socket, or a device node with no device. */
	if (fd < 0)
		return errno == ENXIO ? -EBADFD : -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	return TAKE_FD(fd);
}

int read_fd_regular(int fd, size_t max, char **ret, size_t *ret_size)
{
	_cleanup_free_ char *buf = NULL;
	size_t n = 0, cap = 0;
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	for (;;) {
		ssize_t k;

		/* Room for up to max + 1 bytes, which tells "too big" apart
		 * (a file may grow while it is read). */
		if (n == cap) {
			char *b;

			cap = cap ? cap * 2 : (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096;
			if (cap > max + 1)
				cap = max + 1;
			b = realloc(buf, cap + 1);
			if (!b)
				return -ENOMEM;
			buf = b;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n > max)
			return -EFBIG;
	}
	if (!buf && !(buf = malloc(1)))
		return -ENOMEM;
	buf[n] = 0;
	*ret = TAKE_PTR(buf);
	if (ret_size)
		*ret_size = n;
	return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_size)
{
	/* Links are followed: NixOS's /etc is links into the store. */
	_cleanup_close_ int fd = open_regular(path, O_RDONLY, 0);

	return read_fd_regular(fd, max, ret, ret_size);
}

int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

#define TMP_NAME_SIZE 256

/* ".#name.<64 random bits>" beside the target. Randomness, not the pid,
 * keeps writers apart: they may sit in other pid namespaces. O_EXCL and
 * link()'s EEXIST catch what it does not. */
static void tmp_name(char buf[static TMP_NAME_SIZE], const char *base)
{
	static uint64_t counter;
	uint64_t x;

	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
		x = now_usec() ^ ((uint64_t)getpid() << 40) ^ ++counter;
	snprintf(buf, TMP_NAME_SIZE, ".#%.200s.%016" PRIx64, base, x);
}

/* An unnamed file in dfd (tmp left empty), or where the file system has no
 * O_TMPFILE a named one (tmp set to its name). */
static int tmpfile_open(int dfd, const char *base, mode_t mode, char tmp[static TMP_NAME_SIZE])
{
	int fd;

	tmp[0] = 0;
	fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
	if (fd >= 0)
		return fd;
	/* EISDIR: a kernel that predates O_TMPFILE sees only O_DIRECTORY. */
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -errno;
	for (int i = 0; i < 16; i++) {
		tmp_name(tmp, base);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			break;
	}
	tmp[0] = 0;
	/* Sixteen names taken: not the "file exists" NOREPLACE reports. */
	return errno == EEXIST ? -EBUSY : -errno;
}

/* Gives the unnamed file fd the name dfd/name; fails with EEXIST rather
 * than replace anything. AT_EMPTY_PATH wants CAP_DAC_READ_SEARCH (ENOENT
 * without it); /proc/self/fd works for anyone where /proc is mounted. */
static int link_tmpfile(int fd, int dfd, const char *name)
{
	char path[64];

	if (linkat(fd, "", dfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, path, dfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

/* Puts the complete file fd (named tmp, or unnamed if tmp is empty) in
 * place as dfd/base. Leaves no name but base behind. */
static int tmpfile_place(int fd, int dfd, char tmp[static TMP_NAME_SIZE], const char *base, unsigned flags)
{
	int r = 0;

	if (!tmp[0] && (flags & WRITE_FILE_NOREPLACE))
		return link_tmpfile(fd, dfd, base);
	/* Replacing takes rename(), which needs a name to move. */
	for (int i = 0; !tmp[0] && i < 16; i++) {
		tmp_name(tmp, base);
		r = link_tmpfile(fd, dfd, tmp);
		if (r < 0)
			tmp[0] = 0;
		if (r != -EEXIST)
			break;
	}
	if (r < 0)
		return r == -EEXIST ? -EBUSY : r;
	/* Without RENAME_NOREPLACE, which file systems without O_TMPFILE
	 * (NFS) tend to lack too: link() fails with EEXIST just the same. */
	if (flags & WRITE_FILE_NOREPLACE)
		r = linkat(dfd, tmp, dfd, base, 0) < 0 ? -errno : 0;
	else
		r = renameat(dfd, tmp, dfd, base) < 0 ? -errno : 0;
	if (r < 0 || (flags & WRITE_FILE_NOREPLACE))
		(void)unlinkat(dfd, tmp, 0);
	return r;
}

int write_file_at(int dirfd, const char *name, const void *data, size_t n, mode_t mode, unsigned flags)
{
	_cleanup_close_ int owned = -EBADF, fd = -EBADF, d = -EBADF;
	const char *slash = strrchr(name, '/'), *base = slash ? slash + 1 : name;
	char tmp[TMP_NAME_SIZE];
	int dfd = dirfd, r;

	if (!*base || streq(base, ".") || streq(base, ".."))
		return -EINVAL;
	if (slash) {
		_cleanup_free_ char *dir = slash == name ? strdup("/") : strndup(name, (size_t)(slash - name));

		if (!dir)
			return -ENOMEM;
		owned = openat(dirfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (owned < 0)
			return -errno;
		dfd = owned;
	}
	fd = tmpfile_open(dfd, base, mode, tmp);
	if (fd < 0)
		return fd;
	r = fchmod(fd, mode) < 0 ? -errno : 0;
	if (r == 0)
		r = write_all(fd, data, n);
	if (r == 0 && (flags & WRITE_FILE_SYNC) && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		if (tmp[0])
			(void)unlinkat(dfd, tmp, 0);
		return r;
	}
	r = tmpfile_place(fd, dfd, tmp, base, flags);
	if (r < 0 || !(flags & WRITE_FILE_SYNC))
		return r;
	/* The new name is only durable once the directory is. */
	d = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0 || fsync(d) < 0)
		return -errno;
	return 0;
}

int find_executable(const char *name, char **ret)
{
	const char *path;

	if (!name || !*name)
		return -EINVAL;
	if (strchr(name, '/')) {
		if (access(name, X_OK) < 0)
			return -errno;
		*ret = strdup(name);
		return *ret ? 0 : -ENOMEM;
	}
	path = getenv("PATH");
	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		size_t len = strcspn(p, ":");
		_cleanup_free_ char *dir = strndup(p, len), *full = NULL;

		if (!dir)
			return -ENOMEM;
		p += len + (p[len] == ':');
		if (!*dir)
			continue;
		full = path_join(dir, name);
		if (!full)
			return -ENOMEM;
		if (access(full, X_OK) == 0) {
			*ret = TAKE_PTR(full);
			return 0;
		}
	}
	return -ENOENT;
}

static int fd_flag(int fd, int get, int set, int flag, bool on)
{
	int flags = fcntl(fd, get);

	if (flags < 0)
		return -errno;
	flags = on ? flags | flag : flags & ~flag;
	return fcntl(fd, set, flags) < 0 ? -errno : 0;
}

int fd_nonblock(int fd, bool nonblock)
{
	return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, nonblock);
}

int fd_cloexec(int fd, bool cloexec)
{
	return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, cloexec);
}

/* A unix stream socket and the address for path. */
static int unix_socket(const char *path, struct sockaddr_un *sa)
{
	int fd;

	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	strcpy(sa->sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

int unix_listen(const char *path)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	/* Callers own the directory (they hold its lock), so whatever is at
	 * path is stale. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if (chmod(path, 0600) < 0 || listen(fd, 8) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int unix_connect(const char *path)
{
	struct sockaddr_un sa;
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}
