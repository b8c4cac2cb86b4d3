/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* An asynchronous QMP client: negotiates capabilities, matches replies to
 * commands by id, and passes events on. */

#include <jansson.h>

#include "loop.h"

struct qmp;

/* On success ret is the "return" value and error is 0. On failure ret is
 * NULL, error is -EIO for an error reply (desc says what) or -ECONNRESET
 * when the connection closed first. */
typedef void (*qmp_reply_cb)(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata);
typedef void (*qmp_event_cb)(struct qmp *q, const char *event, json_t *data, void *userdata);
typedef void (*qmp_close_cb)(struct qmp *q, void *userdata);

/* Takes ownership of fd (a connected QMP socket). */
int qmp_new(struct loop *l, int fd, qmp_event_cb on_event, qmp_close_cb on_close, void *userdata,
	    struct qmp **ret);
void qmp_free(struct qmp *q);
static inline void qmp_freep(struct qmp **q)
{
	qmp_free(*q);
	*q = NULL;
}

/* Queues cmd until negotiation is done. args is stolen (may be NULL). */
int qmp_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb, void *userdata);
bool qmp_is_ready(const struct qmp *q);
