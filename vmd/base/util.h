/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))
#define _noreturn_ __attribute__((noreturn))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Both evaluate their argument once: TAKE_PTR(a[i++]) is safe. */
#define TAKE_PTR(p)                                 \
	({                                          \
		typeof(p) *_pp_ = &(p);             \
		typeof(p) _ptr_ = *_pp_;            \
		*_pp_ = NULL;                       \
		_ptr_;                              \
	})
#define TAKE_FD(fd)                                 \
	({                                          \
		int *_pfd_ = &(fd);                 \
		int _fd_ = *_pfd_;                  \
		*_pfd_ = -EBADF;                    \
		_fd_;                               \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* func##p(&x) frees x (with func, which need not take NULL) and leaves
 * NULL behind: for _cleanup_(func##p) and for "freep(&x)" in teardown. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)       \
	static inline void func##p(type *p)            \
	{                                              \
		if (*p) {                              \
			func(*p);                      \
			*p = NULL;                     \
		}                                      \
	}

/* free() that returns NULL: p = mfree(p). */
static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}

/* Closes and returns -EBADF, so "fd = safe_close(fd)" leaves no stale number. */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -EBADF;
}
static inline void closep(int *fd)
{
	*fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MSEC ((usec_t)1000)
usec_t now_usec(void);          /* CLOCK_MONOTONIC */
usec_t now_realtime_usec(void); /* CLOCK_REALTIME */

/* NULL-terminated string vectors. */
void strv_free(char **l);
static inline void strv_freep(char ***l)
{
	strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)
size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
/* Appends a copy of s; returns 0 or -ENOMEM. */
int strv_extend(char ***l, const char *s);
/* Appends s and takes ownership, also on failure. */
int strv_consume(char ***l, char *s);
_printf_(2, 3) int strv_extendf(char ***l, const char *fmt, ...);
char **strv_copy(char *const *l);
char *strv_join(char *const *l, const char *sep);

_printf_(1, 2) char *xasprintf(const char *fmt, ...);
_printf_(1, 0) char *xvasprintf(const char *fmt, va_list ap);
char *path_join(const char *a, const char *b);
bool streq_ptr(const char *a, const char *b);
static inline bool streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}
static inline bool startswith(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Filesystem helpers; all return 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
int rm_rf_children(int dirfd);
/* Reads a regular file (links followed) of at most max bytes; -EFBIG if
 * larger, -EBADFD if path is a FIFO, a socket, a device or a directory:
 * those could block the caller for good or never end. */
/* The content of fd, a regular file of at most max bytes, NUL-terminated:
 * -EBADFD if it is not a regular file, -EFBIG if larger. fd < 0 is
 * returned as the error it is. */
int read_fd_regular(int fd, size_t max, char **ret, size_t *ret_size);
int read_file(const char *path, size_t max, char **ret, size_t *ret_size);
/* Opens path (flags plus O_CLOEXEC, O_NOCTTY; add O_NOFOLLOW to refuse a
 * link) without ever blocking: anything but a regular file is -EBADFD, as
 * for read_file(). Returns the fd or -errno. */
int open_regular(const char *path, int flags, mode_t mode);
int write_all(int fd, const void *buf, size_t n);

enum {
	WRITE_FILE_NOREPLACE = 1 << 0, /* an existing file wins: -EEXIST, the old one stays */
	WRITE_FILE_SYNC = 1 << 1,      /* fsync the file before it appears, the directory after */
};
/* Writes data as dirfd/name (AT_FDCWD: name is a path) atomically: readers see
 * the old file or the whole new one, never a part; never follows a symlink at
 * name (one there is replaced, or with NOREPLACE is "existing"); mode as given
 * (not umask'ed away). No temporary is left behind, whatever fails. With
 * SYNC, an error from syncing the directory comes after the file is in place. */
int write_file_at(int dirfd, const char *name, const void *data, size_t n, mode_t mode, unsigned flags);
static inline int write_file(const char *path, const char *text, mode_t mode, unsigned flags)
{
	return write_file_at(AT_FDCWD, path, text, strlen(text), mode, flags);
}
/* Looks up an executable: paths with a slash are used as they are, bare
 * names are searched in $PATH. */
int find_executable(const char *name, char **ret);

/* A listening unix stream socket at path (mode 0600), replacing whatever
 * was there, and a connection to one. Both return an fd or -errno. */
int unix_listen(const char *path);
int unix_connect(const char *path);

/* Sets and clears O_NONBLOCK / FD_CLOEXEC. */
int fd_nonblock(int fd, bool nonblock);
int fd_cloexec(int fd, bool cloexec);
