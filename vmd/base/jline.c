/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/socket.h>

#include "jline.h"

struct jline {
	struct loop *loop;
	struct loop_source *io;
	int fd;
	size_t max_line;
	jline_msg_cb on_msg;
	jline_close_cb on_close;
	jline_error_cb on_error;
	void *userdata;
	size_t max_out;

	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len;
	bool resync;
	bool closed;
	/* Set while callbacks run; jline_free() then only marks. */
	int busy;
	bool free_pending;
};

static void update_events(struct jline *c)
{
	if (c->io)
		loop_io_set_events(c->io, EPOLLIN | EPOLLRDHUP | (c->out_len ? EPOLLOUT : 0));
}

static void do_close(struct jline *c, int error)
{
	if (c->closed)
		return;
	c->closed = true;
	loop_source_freep(&c->io);
	if (c->on_close)
		c->on_close(c, error, c->userdata);
}

static void flush_out(struct jline *c)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				do_close(c, -errno);
			break;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	update_events(c);
}

/* The line in progress is over max_line: the error handler's reply goes out
 * as far as the socket takes it, then the channel closes. */
static void oversized(struct jline *c)
{
	if (c->on_error) {
		c->on_error(c, -EMSGSIZE, c->userdata);
		if (c->free_pending || c->closed)
			return;
		/* Best effort: the reply to an oversized line. */
		flush_out(c);
	}
	do_close(c, c->on_error ? -EMSGSIZE : -EPROTO);
}

static void parse_lines(struct jline *c)
{
	size_t start = 0;

	while (!c->closed && !c->free_pending) {
		char *nl;

		if (c->resync) {
			char *ff = memchr(c->in + start, 0xff, c->in_len - start);

			if (!ff) {
				start = c->in_len;
				break;
			}
			start = (size_t)(ff - c->in) + 1;
			c->resync = false;
			continue;
		}
		nl = memchr(c->in + start, '\n', c->in_len - start);
		if (!nl)
			break;
		*nl = 0;
		/* Skip blank lines and stray 0xff bytes around lines. */
		char *line = c->in + start;
		size_t len = (size_t)(nl - line);
		/* Every line, not only the unfinished rest of the buffer: a
		 * long line whose newline came in the same read as its end
		 * never shows up there. */
		if (len > c->max_line) {
			oversized(c);
			return;
		}
		while (len > 0 && (*line == (char)0xff || *line == ' ' || *line == '\r' || *line == '\t')) {
			line++;
			len--;
		}
		start = (size_t)(nl - c->in) + 1;
		if (len == 0)
			continue;
		json_error_t err;
		/* A NUL byte inside a line is as malformed as anything else. */
		json_t *msg = memchr(line, 0, len) ? NULL : json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
		if (!msg || !json_is_object(msg)) {
			json_decref(msg);
			if (c->on_error) {
				c->on_error(c, -EBADMSG, c->userdata);
				continue;
			}
			do_close(c, -EPROTO);
			break;
		}
		c->on_msg(c, msg, c->userdata);
		json_decref(msg);
	}
	if (c->free_pending || c->closed)
		return;
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (c->in_len > c->max_line)
		oversized(c);
}

static void on_io(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct jline *c = userdata;

	(void)s;
	c->busy++;
	if (revents & EPOLLOUT)
		flush_out(c);
	if (!c->closed && (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR))) {
		for (;;) {
			ssize_t n;

			if (c->in_cap - c->in_len < 4096) {
				size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
				char *b = realloc(c->in, cap + 1);

				if (!b) {
					do_close(c, -ENOMEM);
					break;
				}
				c->in = b;
				c->in_cap = cap;
			}
			n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					do_close(c, -errno);
				break;
			}
			if (n == 0) {
				parse_lines(c);
				do_close(c, 0);
				break;
			}
			c->in_len += (size_t)n;
			parse_lines(c);
			if (c->closed || c->free_pending)
				break;
		}
	}
	c->busy--;
	if (c->free_pending && c->busy == 0)
		jline_free(c);
}

int jline_new(struct loop *l, int fd, size_t max_line, jline_msg_cb on_msg, jline_close_cb on_close,
	      void *userdata, struct jline **ret)
{
	_cleanup_close_ int owned = fd; /* ours, even if this fails */
	_cleanup_(jline_freep) struct jline *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->loop = l;
	c->fd = TAKE_FD(owned);
	c->max_line = max_line;
	c->on_msg = on_msg;
	c->on_close = on_close;
	c->userdata = userdata;
	c->max_out = 64 * 1024 * 1024;
	r = fd_nonblock(fd, true);
	if (r == 0)
		r = loop_add_io(l, fd, EPOLLIN | EPOLLRDHUP, on_io, c, &c->io);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

void jline_free(struct jline *c)
{
	if (!c)
		return;
	if (c->busy) {
		c->free_pending = true;
		c->on_msg = NULL;
		c->on_close = NULL;
		loop_source_freep(&c->io);
		c->closed = true;
		return;
	}
	loop_source_freep(&c->io);
	safe_close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

void jline_flush_final(struct jline *c)
{
	size_t off = 0;

	while (!c->closed && off < c->out_len) {
		ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (off == 0)
		return;
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
}

int jline_send_raw(struct jline *c, const void *buf, size_t n)
{
	char *o;

	if (c->closed)
		return -ENOTCONN;
	if (c->out_len + n > c->max_out)
		return -ENOBUFS;
	o = realloc(c->out, c->out_len + n);
	if (!o)
		return -ENOMEM;
	memcpy(o + c->out_len, buf, n);
	c->out = o;
	c->out_len += n;
	/* Written from the io callback, never from here: a write error must
	 * not run on_close() under the caller's feet. */
	update_events(c);
	return 0;
}

int jline_send(struct jline *c, json_t *msg)
{
	_cleanup_free_ char *s = json_dumps(msg, JSON_COMPACT);
	size_t n;
	int r;

	if (!s)
		return -ENOMEM;
	n = strlen(s);
	r = jline_send_raw(c, s, n);
	if (r < 0)
		return r;
	return jline_send_raw(c, "\n", 1);
}

void jline_on_error(struct jline *c, jline_error_cb on_error)
{
	c->on_error = on_error;
}

void jline_set_max_out(struct jline *c, size_t max)
{
	c->max_out = max;
}

size_t jline_out_pending(const struct jline *c)
{
	return c->out_len;
}

void jline_resync(struct jline *c)
{
	c->resync = true;
}

size_t jline_pending(const struct jline *c)
{
	return c->in_len;
}
