/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>

#include "vmlog.h"

int vmlog_open(struct vmlog *l, const char *path, uint64_t max)
{
	/* Not a FIFO or a device someone put there: those would block vmd
	 * or take the guest's output somewhere else. */
	l->fd = open_regular(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, 0640);
	if (l->fd < 0)
		return l->fd;
	l->path = strdup(path);
	l->max = max;
	if (!l->path) {
		l->fd = safe_close(l->fd);
		return -ENOMEM;
	}
	return vmlog_check(l);
}

void vmlog_close(struct vmlog *l)
{
	l->fd = safe_close(l->fd);
	free(l->path);
	l->path = NULL;
}

int vmlog_check(struct vmlog *l)
{
	_cleanup_free_ char *old = NULL;
	_cleanup_close_ int in = -EBADF, out = -EBADF;
	struct stat st;

	if (l->fd < 0)
		return -EBADF;
	if (fstat(l->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size <= l->max)
		return 0;
	old = xasprintf("%s.1", l->path);
	if (!old)
		return -ENOMEM;
	in = open_regular(l->path, O_RDONLY | O_NOFOLLOW, 0);
	out = open_regular(old, O_WRONLY | O_CREAT | O_NOFOLLOW, 0640);
	if (out >= 0 && ftruncate(out, 0) < 0)
		out = safe_close(out);
	if (in >= 0 && out >= 0) {
		off_t off = 0;

		while (off < st.st_size && sendfile(out, in, &off, (size_t)(st.st_size - off)) > 0)
			;
	}
	/* Truncate even if the copy failed: the bound matters more. */
	return ftruncate(l->fd, 0) < 0 ? -errno : 0;
}

int vmlog_write(struct vmlog *l, const void *buf, size_t n)
{
	if (l->fd < 0)
		return -EBADF;
	vmlog_check(l);
	return write_all(l->fd, buf, n);
}

void vmlog_printf(struct vmlog *l, const char *fmt, ...)
{
	char msg[1024], when[32];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(msg, sizeof(msg), "\n-- vmd %s: ", when);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(msg))
		n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg) - 1)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	vmlog_write(l, msg, (size_t)n);
}

uint64_t vmlog_offset(struct vmlog *l)
{
	struct stat st;

	return l->fd >= 0 && fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

char *vmlog_tail(const char *path, unsigned n, uint64_t offset)
{
	_cleanup_close_ int fd = open_regular(path, O_RDONLY | O_NOFOLLOW, 0);
	char buf[8192], *start;
	struct stat st;
	ssize_t k;
	off_t off;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	/* Rotated since: the whole (new) file belongs to this boot. */
	if ((off_t)offset > st.st_size)
		offset = 0;
	off = st.st_size > (off_t)sizeof(buf) - 1 ? st.st_size - (off_t)sizeof(buf) + 1 : 0;
	if (off < (off_t)offset)
		off = (off_t)offset;
	k = pread(fd, buf, sizeof(buf) - 1, off);
	if (k <= 0)
		return NULL;
	buf[k] = 0;
	/* Drop trailing blank lines, then walk back n lines. */
	while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == '\r'))
		buf[--k] = 0;
	start = buf + k;
	for (unsigned i = 0; i < n && start > buf; i++) {
		start--;
		while (start > buf && start[-1] != '\n')
			start--;
	}
	return strdup(start);
}
