/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Newline-delimited JSON over a stream socket, driven by the event loop:
 * the transport under QMP, the guest agent and the control socket. Input
 * lines are bounded; a longer line is a protocol error that closes the
 * channel rather than growing memory without limit. */

#include <jansson.h>

#include "loop.h"

struct jline;

/* msg is borrowed for the duration of the call. */
typedef void (*jline_msg_cb)(struct jline *c, json_t *msg, void *userdata);
/* error: 0 on EOF, else -errno (-EPROTO for an oversized or bad line). */
typedef void (*jline_close_cb)(struct jline *c, int error, void *userdata);

/* A line that is not a JSON object (-EBADMSG: the channel stays open) or
 * longer than max_line (-EMSGSIZE: what was sent so far is flushed, then
 * the channel closes). Without this handler both close the channel. */
typedef void (*jline_error_cb)(struct jline *c, int error, void *userdata);

/* Takes ownership of fd. */
int jline_new(struct loop *l, int fd, size_t max_line, jline_msg_cb on_msg, jline_close_cb on_close,
	      void *userdata, struct jline **ret);
void jline_free(struct jline *c);
static inline void jline_freep(struct jline **c)
{
	if (*c)
		jline_free(*c);
	*c = NULL;
}
/* What is still queued goes out now, as far as the socket takes it without
 * blocking; no callback runs. For a last reply before the process exits. */
void jline_flush_final(struct jline *c);

void jline_on_error(struct jline *c, jline_error_cb on_error);
/* Output queued beyond max is refused with -ENOBUFS (default 64 MiB). */
void jline_set_max_out(struct jline *c, size_t max);
size_t jline_out_pending(const struct jline *c);

int jline_send(struct jline *c, json_t *msg);
int jline_send_raw(struct jline *c, const void *buf, size_t n);
/* Drops input up to and including the next 0xff byte (the guest agent's
 * guest-sync-delimited marker). */
void jline_resync(struct jline *c);
/* Bytes received but not yet parsed, for tests. */
size_t jline_pending(const struct jline *c);
