/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The console hub: the backlog ring (wrap-around, overflow, order), one
 * writer, --force, observers, and the end of a session. */
#include "console.h"
#include "test.h"

struct rec {
	struct console_client cc;
	char out[2 * CONSOLE_BACKLOG + 64];
	size_t n;
	char events[256];
};

static void rec_output(struct console_client *cc, const char *buf, size_t n)
{
	struct rec *r = container_of(cc, struct rec, cc);

	ASSERT(r->n + n <= sizeof(r->out));
	memcpy(r->out + r->n, buf, n);
	r->n += n;
}

static void rec_event(struct console_client *cc, const char *kind, const char *text)
{
	struct rec *r = container_of(cc, struct rec, cc);
	size_t l = strlen(r->events);

	snprintf(r->events + l, sizeof(r->events) - l, "%s%s: %s", l ? "; " : "", kind, text);
}

static const struct console_client_ops rec_ops = { rec_output, rec_event };

static void rec_init(struct rec *r, const char *who)
{
	memset(r, 0, sizeof(*r));
	r->cc.ops = &rec_ops;
	r->cc.who = (char *)who;
}

TEST(backlog_keeps_the_latest_in_order)
{
	static struct console_hub h;
	static char big[CONSOLE_BACKLOG + 100];
	struct rec r;

	memset(&h, 0, sizeof(h));
	rec_init(&r, "a");
	console_hub_output(&h, "hello ", 6);
	console_hub_output(&h, "world", 5);
	ASSERT(console_hub_attach(&h, &r.cc, false, false, NULL) == 0);
	console_hub_replay(&h, &r.cc);
	ASSERT_EQ(r.n, (size_t)11);
	ASSERT(memcmp(r.out, "hello world", 11) == 0);
	console_hub_detach(&h, &r.cc);

	/* Past the end of the ring, in pieces that wrap: the last bytes, in
	 * order. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	for (size_t off = 0; off < sizeof(big); off += 1000)
		console_hub_output(&h, big + off, MIN((size_t)1000, sizeof(big) - off));
	rec_init(&r, "a");
	ASSERT(console_hub_attach(&h, &r.cc, false, false, NULL) == 0);
	console_hub_replay(&h, &r.cc);
	ASSERT_EQ(r.n, (size_t)CONSOLE_BACKLOG);
	ASSERT(memcmp(r.out, big + sizeof(big) - CONSOLE_BACKLOG, CONSOLE_BACKLOG) == 0);
	console_hub_detach(&h, &r.cc);

	/* One write larger than the ring. */
	console_hub_output(&h, big, sizeof(big));
	rec_init(&r, "a");
	ASSERT(console_hub_attach(&h, &r.cc, false, false, NULL) == 0);
	console_hub_replay(&h, &r.cc);
	ASSERT_EQ(r.n, (size_t)CONSOLE_BACKLOG);
	ASSERT(memcmp(r.out, big + 100, CONSOLE_BACKLOG) == 0);
	console_hub_detach(&h, &r.cc);
}

TEST(one_writer_force_and_observers)
{
	static struct console_hub h;
	struct rec w1, w2, ro, w3;
	char *holder = NULL;

	memset(&h, 0, sizeof(h));
	rec_init(&w1, "uid 0 (pid 1)");
	rec_init(&w2, "uid 0 (pid 2)");
	rec_init(&ro, "uid 0 (pid 3)");
	rec_init(&w3, "uid 0 (pid 4)");
	ASSERT(console_hub_attach(&h, &w1.cc, true, false, NULL) == 0);
	ASSERT(console_hub_attach(&h, &w2.cc, true, false, &holder) == -EBUSY);
	ASSERT_STREQ(holder, "uid 0 (pid 1)");
	free(holder);
	ASSERT(console_hub_attach(&h, &ro.cc, false, false, NULL) == 0);
	ASSERT(h.writer == &w1.cc);

	/* Everyone sees the output. */
	console_hub_output(&h, "x", 1);
	ASSERT(w1.n == 1 && ro.n == 1);

	/* --force: the old writer is told and let go. */
	ASSERT(console_hub_attach(&h, &w3.cc, true, true, NULL) == 0);
	ASSERT(h.writer == &w3.cc);
	ASSERT_STREQ(w1.events, "taken-over: uid 0 (pid 4) took the console over (--force)");
	console_hub_output(&h, "y", 1);
	ASSERT(w1.n == 1 && w3.n == 1 && ro.n == 2);

	console_hub_event(&h, "restarted", "vm went down");
	ASSERT_STREQ(ro.events, "restarted: vm went down");
	ASSERT_STREQ(w3.events, "restarted: vm went down");

	/* The end: everyone told, nobody left. */
	console_hub_end(&h, "vm stopped");
	ASSERT(!h.clients && !h.writer);
	ASSERT_STREQ(ro.events, "restarted: vm went down; ended: vm stopped");
	ASSERT(strstr(w1.events, "ended") == NULL);
	/* A writer's place is free again. */
	ASSERT(console_hub_attach(&h, &w2.cc, true, false, NULL) == 0);
	console_hub_detach(&h, &w2.cc);
	ASSERT(!h.writer);
}

RUN_TESTS(T(backlog_keeps_the_latest_in_order), T(one_writer_force_and_observers))
