/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "console.h"

static void ring_append(struct console_hub *h, const char *buf, size_t n)
{
	if (n >= CONSOLE_BACKLOG) {
		memcpy(h->ring, buf + n - CONSOLE_BACKLOG, CONSOLE_BACKLOG);
		h->start = 0;
		h->len = CONSOLE_BACKLOG;
		return;
	}
	for (size_t done = 0; done < n;) {
		size_t end = (h->start + h->len) % CONSOLE_BACKLOG;
		size_t k = MIN(n - done, CONSOLE_BACKLOG - end);

		memcpy(h->ring + end, buf + done, k);
		done += k;
		h->len += k;
		if (h->len > CONSOLE_BACKLOG) {
			h->start = (h->start + h->len - CONSOLE_BACKLOG) % CONSOLE_BACKLOG;
			h->len = CONSOLE_BACKLOG;
		}
	}
}

void console_hub_backlog(const struct console_hub *h, const char **a, size_t *na, const char **b, size_t *nb)
{
	size_t first = MIN(h->len, CONSOLE_BACKLOG - h->start);

	*a = h->ring + h->start;
	*na = first;
	*b = h->ring;
	*nb = h->len - first;
}

void console_hub_output(struct console_hub *h, const char *buf, size_t n)
{
	ring_append(h, buf, n);
	/* A client may detach itself from its callback (a full send buffer):
	 * take the next one first. */
	for (struct console_client *cc = h->clients, *next; cc; cc = next) {
		next = cc->next;
		cc->ops->output(cc, buf, n);
	}
}

int console_hub_attach(struct console_hub *h, struct console_client *cc, bool writer, bool force,
		       char **ret_holder)
{
	if (ret_holder)
		*ret_holder = NULL;
	if (writer && h->writer && !force) {
		if (ret_holder)
			*ret_holder = strdup(h->writer->who ? h->writer->who : "someone");
		return -EBUSY;
	}
	if (writer && h->writer) {
		struct console_client *old = h->writer;
		_cleanup_free_ char *text = xasprintf("%s took the console over (--force)", cc->who ? cc->who : "someone");

		console_hub_detach(h, old);
		old->ops->event(old, "taken-over", text ? text : "the console was taken over");
	}
	cc->writer = writer;
	cc->next = h->clients;
	h->clients = cc;
	if (writer)
		h->writer = cc;
	return 0;
}

void console_hub_replay(struct console_hub *h, struct console_client *cc)
{
	const char *a, *b;
	size_t na, nb;

	console_hub_backlog(h, &a, &na, &b, &nb);
	if (na)
		cc->ops->output(cc, a, na);
	if (nb)
		cc->ops->output(cc, b, nb);
}

void console_hub_detach(struct console_hub *h, struct console_client *cc)
{
	for (struct console_client **pp = &h->clients; *pp; pp = &(*pp)->next)
		if (*pp == cc) {
			*pp = cc->next;
			break;
		}
	if (h->writer == cc)
		h->writer = NULL;
	cc->next = NULL;
}

void console_hub_event(struct console_hub *h, const char *kind, const char *text)
{
	for (struct console_client *cc = h->clients, *next; cc; cc = next) {
		next = cc->next;
		cc->ops->event(cc, kind, text);
	}
}

void console_hub_end(struct console_hub *h, const char *text)
{
	while (h->clients) {
		struct console_client *cc = h->clients;

		console_hub_detach(h, cc);
		cc->ops->event(cc, "ended", text);
	}
}
