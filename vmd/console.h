/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A VM's serial console as the daemon shares it (console hub): a bounded
 * backlog of the latest output, replayed to whoever attaches, and the
 * clients attached to it: at most one writer, any number of read-only
 * observers. Pure bookkeeping, no I/O: the control socket implements the
 * clients, the manager feeds the output and the events. */

#include "util.h"

/* The backlog: the last 16 KiB the guest wrote (a login prompt, a panic). */
#define CONSOLE_BACKLOG (16 * 1024)

struct console_client;

struct console_client_ops {
	void (*output)(struct console_client *cc, const char *buf, size_t n);
	/* kind: "restarted", "ended", "taken-over". text: for people. */
	void (*event)(struct console_client *cc, const char *kind, const char *text);
};

struct console_client {
	const struct console_client_ops *ops;
	bool writer;
	char *who; /* "uid U (pid P)", for the refusal and the takeover */
	struct console_client *next;
};

struct console_hub {
	char ring[CONSOLE_BACKLOG];
	size_t start, len;
	struct console_client *clients;
	struct console_client *writer;
};

/* Output from the guest: into the backlog and to every client. */
void console_hub_output(struct console_hub *h, const char *buf, size_t n);
/* The backlog in order, as up to two pieces. */
void console_hub_backlog(const struct console_hub *h, const char **a, size_t *na, const char **b, size_t *nb);
/* Attaches cc (its who set). A writer
 * when another holds the console: -EBUSY with *ret_holder (a copy of the
 * holder's who), unless force, which takes it over: the previous writer
 * gets the event "taken-over" and is detached. */
int console_hub_attach(struct console_hub *h, struct console_client *cc, bool writer, bool force,
		       char **ret_holder);
void console_hub_detach(struct console_hub *h, struct console_client *cc);
/* Sends the backlog to cc (after attaching it). */
void console_hub_replay(struct console_hub *h, struct console_client *cc);
/* Tells every client (kind, text). */
void console_hub_event(struct console_hub *h, const char *kind, const char *text);
/* "ended": every client told, then detached. */
void console_hub_end(struct console_hub *h, const char *text);
