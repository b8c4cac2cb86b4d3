/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The event loop, the JSON-lines transport, and the QMP and guest-agent
 * clients against scripted peers on the other end of a socketpair. */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include "base64.h"
#include "jline.h"
#include "loop.h"
#include "qga.h"
#include "qmp.h"
#include "spawn.h"
#include "test.h"

static void pump(struct loop *l, usec_t duration)
{
	usec_t end = now_usec() + duration;

	while (now_usec() < end)
		ASSERT(loop_iterate(l, 10 * USEC_PER_MSEC) >= 0);
}

/* Reads one line from the peer end, pumping the loop meanwhile. */
static char *peer_line(struct loop *l, int fd)
{
	static char buf[65536];
	static size_t len;

	for (int i = 0; i < 500; i++) {
		char *nl = memchr(buf, '\n', len);
		ssize_t n;

		if (nl) {
			char *line = strndup(buf, (size_t)(nl - buf));
			memmove(buf, nl + 1, len - (size_t)(nl + 1 - buf));
			len -= (size_t)(nl + 1 - buf);
			return line;
		}
		loop_iterate(l, 10 * USEC_PER_MSEC);
		n = recv(fd, buf + len, sizeof(buf) - len, MSG_DONTWAIT);
		if (n > 0)
			len += (size_t)n;
	}
	return NULL;
}

static void peer_send(int fd, const char *s)
{
	ASSERT(write_all(fd, s, strlen(s)) == 0);
}

static void on_timer(struct loop_source *s, void *userdata)
{
	int *order = userdata;
	(void)s;
	*order = order[1]++;
}

TEST(loop_timers)
{
	struct loop *l;
	struct loop_source *a, *b, *c;
	int ta[2] = { -1, 0 }, tb[2] = { -1, 0 }, tc[2] = { -1, 0 };
	usec_t now = now_usec();

	ASSERT(loop_new(&l) == 0);
	/* Share one counter through [1] of the first array. */
	ASSERT(loop_add_timer(l, now + 60 * USEC_PER_MSEC, on_timer, ta, &a) == 0);
	ASSERT(loop_add_timer(l, now + 20 * USEC_PER_MSEC, on_timer, tb, &b) == 0);
	ASSERT(loop_add_timer(l, now + 40 * USEC_PER_MSEC, on_timer, tc, &c) == 0);
	/* A disarmed timer never fires. */
	ASSERT(loop_timer_set(c, 0) == 0);
	pump(l, 120 * USEC_PER_MSEC);
	ASSERT(tb[0] == 0 && ta[0] == 0 && tc[0] == -1);
	loop_source_free(a);
	loop_source_free(b);
	loop_source_free(c);
	loop_free(l);
}

static void on_child(struct loop_source *s, const siginfo_t *si, void *userdata)
{
	int *status = userdata;
	(void)s;
	*status = si ? si->si_status : -1;
}

static void on_sig(struct loop_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	int *got = userdata;
	(void)s;
	*got = (int)si->ssi_signo;
}

TEST(loop_child_and_signal)
{
	char *argv[] = { "/bin/sh", "-c", "exit 5", NULL };
	struct spawn_opts o = { .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .profile = SANDBOX_TOOL };
	struct loop *l;
	struct loop_source *cs, *ss;
	int status = -2, got = 0, pidfd;
	pid_t pid;
	static const int sigs[] = { SIGUSR1 };

	ASSERT(loop_new(&l) == 0);
	ASSERT(spawn(&o, &pid, &pidfd) == 0);
	ASSERT(loop_add_child(l, pidfd, on_child, &status, &cs) == 0);
	ASSERT(loop_add_signals(l, sigs, 1, on_sig, &got, &ss) == 0);
	kill(getpid(), SIGUSR1);
	pump(l, 300 * USEC_PER_MSEC);
	ASSERT_EQ(status, 5);
	ASSERT_EQ(got, SIGUSR1);
	loop_source_free(cs);
	loop_source_free(ss);
	close(pidfd);
	loop_free(l);
}

struct jrecv {
	int msgs, closed, error;
};

static void j_msg(struct jline *c, json_t *msg, void *userdata)
{
	struct jrecv *r = userdata;
	(void)c;
	if (json_object_get(msg, "n"))
		r->msgs++;
}

static void j_close(struct jline *c, int error, void *userdata)
{
	struct jrecv *r = userdata;
	(void)c;
	r->closed++;
	r->error = error;
}

/* A fresh channel (max_line 1024) is sent buf: it passes msgs messages on,
 * then closes with a protocol error. */
static void jline_refuses(struct loop *l, const char *buf, size_t n, int msgs)
{
	struct jline *c;
	struct jrecv r = {};
	int sv[2];

	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(jline_new(l, sv[0], 1024, j_msg, j_close, &r, &c) == 0);
	ASSERT(write_all(sv[1], buf, n) == 0);
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(r.msgs, msgs);
	ASSERT_EQ(r.closed, 1);
	ASSERT_EQ(r.error, -EPROTO);
	jline_free(c);
	close(sv[1]);
}

TEST(jline_partial_and_bounds)
{
	struct loop *l;
	struct jline *c;
	struct jrecv r = {};
	int sv[2];

	ASSERT(loop_new(&l) == 0);
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(jline_new(l, sv[0], 1024, j_msg, j_close, &r, &c) == 0);
	/* Split messages across writes, blank lines between. */
	peer_send(sv[1], "{\"n\"");
	pump(l, 20 * USEC_PER_MSEC);
	peer_send(sv[1], ": 1}\n\n{\"n\": 2}\r\n{\"n\":");
	pump(l, 20 * USEC_PER_MSEC);
	ASSERT_EQ(r.msgs, 2);
	peer_send(sv[1], " 3}\n");
	pump(l, 20 * USEC_PER_MSEC);
	ASSERT_EQ(r.msgs, 3);
	/* A line over the bound is a protocol error, not a bigger buffer. */
	{
		char big[2048];
		memset(big, 'x', sizeof(big));
		ASSERT(write_all(sv[1], big, sizeof(big)) == 0);
	}
	pump(l, 50 * USEC_PER_MSEC);
	ASSERT_EQ(r.closed, 1);
	ASSERT_EQ(r.error, -EPROTO);
	jline_free(c);
	close(sv[1]);

	/* So is a whole line over the bound that arrives with its newline in
	 * one read, where the unfinished rest of the buffer is empty. */
	{
		char big[1100];
		memset(big, ' ', sizeof(big));
		memcpy(big, "{\"n\": 1", 7);
		memcpy(big + sizeof(big) - 2, "}\n", 2);
		jline_refuses(l, big, sizeof(big), 0);
	}
	/* Malformed JSON closes the channel too. */
	jline_refuses(l, "{\"n\": 1}\n{nope}\n", 16, 1);
	loop_free(l);
}

struct qmp_state {
	int replies, events, closed, last_code;
	char last_error[128];
	char last_event[64];
};

static void q_reply(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	struct qmp_state *s = userdata;
	(void)q;
	(void)ret;
	s->replies++;
	s->last_code = error;
	snprintf(s->last_error, sizeof(s->last_error), "%s", desc ? desc : "");
}

static void q_event(struct qmp *q, const char *event, json_t *data, void *userdata)
{
	struct qmp_state *s = userdata;
	(void)q;
	(void)data;
	s->events++;
	snprintf(s->last_event, sizeof(s->last_event), "%s", event);
}

static void q_close(struct qmp *q, void *userdata)
{
	struct qmp_state *s = userdata;
	(void)q;
	s->closed++;
}

static json_int_t line_id(const char *line, const char *expect_cmd)
{
	json_t *j = json_loads(line, 0, NULL);
	json_int_t id;

	ASSERT(j);
	ASSERT_STREQ(json_string_value(json_object_get(j, "execute")), expect_cmd);
	id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	return id;
}

TEST(qmp_negotiation_replies_events)
{
	struct loop *l;
	struct qmp *q;
	struct qmp_state s = {};
	char buf[256], *line;
	json_int_t id;
	int sv[2];

	ASSERT(loop_new(&l) == 0);
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(qmp_new(l, sv[0], q_event, q_close, &s, &q) == 0);
	/* Queued before the greeting: must wait for negotiation. */
	ASSERT(qmp_command(q, "cont", NULL, q_reply, &s) == 0);
	pump(l, 20 * USEC_PER_MSEC);
	ASSERT(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) < 0);
	peer_send(sv[1], "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
	line = peer_line(l, sv[1]);
	id = line_id(line, "qmp_capabilities");
	free(line);
	snprintf(buf, sizeof(buf), "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	peer_send(sv[1], buf);
	line = peer_line(l, sv[1]);
	id = line_id(line, "cont");
	free(line);
	ASSERT(qmp_is_ready(q));
	/* An event, then an error reply for cont. */
	peer_send(sv[1], "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n");
	snprintf(buf, sizeof(buf), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": %lld}\r\n",
		 (long long)id);
	peer_send(sv[1], buf);
	pump(l, 30 * USEC_PER_MSEC);
	ASSERT_EQ(s.events, 1);
	ASSERT_STREQ(s.last_event, "SHUTDOWN");
	ASSERT_EQ(s.replies, 1);
	ASSERT_STREQ(s.last_error, "nope");
	ASSERT_EQ(s.last_code, -EIO);
	/* A pending command fails when the peer goes away. */
	ASSERT(qmp_command(q, "query-status", NULL, q_reply, &s) == 0);
	pump(l, 20 * USEC_PER_MSEC);
	close(sv[1]);
	pump(l, 30 * USEC_PER_MSEC);
	ASSERT_EQ(s.closed, 1);
	ASSERT_EQ(s.replies, 2);
	ASSERT_EQ(s.last_code, -ECONNRESET);
	ASSERT(qmp_command(q, "cont", NULL, q_reply, &s) == -ENOTCONN);
	qmp_free(q);
	loop_free(l);
}

struct qga_state {
	int done;
	struct qga_result res;
	char out[64];
};

static void g_done(struct qga *g, const struct qga_result *res, void *userdata)
{
	struct qga_state *s = userdata;
	(void)g;
	s->done++;
	s->res = *res;
	snprintf(s->out, sizeof(s->out), "%.*s", (int)res->out_len, res->out ? res->out : "");
	s->res.out = s->res.err = NULL;
}

TEST(qga_sync_exec_status)
{
	struct loop *l;
	struct qga *g;
	struct qga_state s = {};
	char buf[256], raw[512], *line;
	char *argv[] = { "sh", "-c", "echo hello; exit 3", NULL };
	int sv[2];
	ssize_t n;
	json_t *j;

	ASSERT(loop_new(&l) == 0);
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(qga_new(l, sv[0], &g) == 0);
	ASSERT(qga_exec(g, argv, 10 * USEC_PER_SEC, g_done, &s) == 0);
	pump(l, 20 * USEC_PER_MSEC);
	n = recv(sv[1], raw, sizeof(raw) - 1, MSG_DONTWAIT);
	ASSERT(n > 2);
	raw[n] = 0;
	/* 0xff resets the agent's parser, then the delimited sync. */
	ASSERT(raw[0] == (char)0xff);
	j = json_loads(raw + 1, JSON_DISABLE_EOF_CHECK, NULL);
	ASSERT(j);
	ASSERT_STREQ(json_string_value(json_object_get(j, "execute")), "guest-sync-delimited");
	json_int_t id = json_integer_value(json_object_get(json_object_get(j, "arguments"), "id"));
	json_decref(j);
	/* Stale bytes from an earlier session, then the real answer. */
	peer_send(sv[1], "{\"return\": 1}\n");
	snprintf(buf, sizeof(buf), "\xff{\"return\": %lld}\n", (long long)id);
	peer_send(sv[1], buf);
	line = peer_line(l, sv[1]);
	ASSERT(line && strstr(line, "\"guest-exec\"") && strstr(line, "\"capture-output\":true") &&
	       strstr(line, "\"path\":\"sh\""));
	free(line);
	peer_send(sv[1], "{\"return\": {\"pid\": 42}}\n");
	line = peer_line(l, sv[1]);
	ASSERT(line && strstr(line, "guest-exec-status") && strstr(line, "42"));
	free(line);
	peer_send(sv[1], "{\"return\": {\"exited\": false}}\n");
	line = peer_line(l, sv[1]);
	ASSERT(line && strstr(line, "guest-exec-status"));
	free(line);
	/* "hello\n" */
	peer_send(sv[1], "{\"return\": {\"exited\": true, \"exitcode\": 3, \"out-data\": \"aGVsbG8K\"}}\n");
	pump(l, 30 * USEC_PER_MSEC);
	ASSERT_EQ(s.done, 1);
	ASSERT_EQ(s.res.error, 0);
	ASSERT_EQ(s.res.status, 3);
	ASSERT_STREQ(s.out, "hello\n");

	/* Killed by a signal: 128 + signal, like a shell. */
	ASSERT(qga_exec(g, argv, 10 * USEC_PER_SEC, g_done, &s) == 0);
	pump(l, 20 * USEC_PER_MSEC);
	n = recv(sv[1], raw, sizeof(raw) - 1, MSG_DONTWAIT);
	raw[n] = 0;
	j = json_loads(raw + 1, JSON_DISABLE_EOF_CHECK, NULL);
	id = json_integer_value(json_object_get(json_object_get(j, "arguments"), "id"));
	json_decref(j);
	snprintf(buf, sizeof(buf), "\xff{\"return\": %lld}\n", (long long)id);
	peer_send(sv[1], buf);
	free(peer_line(l, sv[1]));
	peer_send(sv[1], "{\"return\": {\"pid\": 43}}\n");
	free(peer_line(l, sv[1]));
	peer_send(sv[1], "{\"return\": {\"exited\": true, \"signal\": 9}}\n");
	pump(l, 30 * USEC_PER_MSEC);
	ASSERT_EQ(s.done, 2);
	ASSERT_EQ(s.res.status, 128 + 9);

	/* The agent going away fails the command. */
	ASSERT(qga_exec(g, argv, 10 * USEC_PER_SEC, g_done, &s) == 0);
	close(sv[1]);
	pump(l, 30 * USEC_PER_MSEC);
	ASSERT_EQ(s.done, 3);
	ASSERT(s.res.error < 0);
	qga_free(g);
	loop_free(l);
}

TEST(qga_timeout)
{
	struct loop *l;
	struct qga *g;
	struct qga_state s = {};
	char *argv[] = { "true", NULL };
	int sv[2];

	ASSERT(loop_new(&l) == 0);
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(qga_new(l, sv[0], &g) == 0);
	ASSERT(qga_exec(g, argv, 300 * USEC_PER_MSEC, g_done, &s) == 0);
	pump(l, 1500 * USEC_PER_MSEC);
	ASSERT_EQ(s.done, 1);
	ASSERT_EQ(s.res.error, -ETIMEDOUT);
	qga_free(g);
	close(sv[1]);
	loop_free(l);
}

/* A scripted agent for two commands at once: "sleep" (pid 10) runs until
 * killed, "true" (pid 11) is done at its first poll, the kill (pid 12) at
 * its. Answers every line until both callbacks ran. */
struct fake_agent {
	bool killed;
	char kill_args[128];
	int polls_10, polls_11;
};

static void fake_agent_answer(int fd, struct fake_agent *a, const char *line)
{
	_cleanup_(json_decrefp) json_t *j = json_loads(line[0] == (char)0xff ? line + 1 : line, 0, NULL);
	const char *cmd = json_string_value(json_object_get(j, "execute"));
	json_t *args = json_object_get(j, "arguments");
	char buf[256];

	ASSERT(cmd);
	if (streq(cmd, "guest-sync-delimited")) {
		snprintf(buf, sizeof(buf), "\xff{\"return\": %lld}\n",
			 (long long)json_integer_value(json_object_get(args, "id")));
		peer_send(fd, buf);
	} else if (streq(cmd, "guest-exec")) {
		const char *path = json_string_value(json_object_get(args, "path"));
		_cleanup_free_ char *rest = json_dumps(json_object_get(args, "arg"), JSON_COMPACT);

		if (streq(path, "/bin/sh")) {
			snprintf(a->kill_args, sizeof(a->kill_args), "%s", strrchr(rest, ','));
			a->killed = true;
		}
		snprintf(buf, sizeof(buf), "{\"return\": {\"pid\": %d}}\n",
			 streq(path, "sleep") ? 10 : streq(path, "true") ? 11 : 12);
		peer_send(fd, buf);
	} else {
		json_int_t pid = json_integer_value(json_object_get(args, "pid"));

		ASSERT_STREQ(cmd, "guest-exec-status");
		a->polls_10 += pid == 10;
		a->polls_11 += pid == 11;
		if (pid == 10 && !a->killed)
			peer_send(fd, "{\"return\": {\"exited\": false}}\n");
		else if (pid == 10)
			peer_send(fd, "{\"return\": {\"exited\": true, \"signal\": 9}}\n");
		else
			peer_send(fd, "{\"return\": {\"exited\": true, \"exitcode\": 0}}\n");
	}
}

TEST(qga_concurrent_and_kill)
{
	struct loop *l;
	struct qga *g;
	struct qga_state slow = {}, quick = {};
	struct fake_agent a = {};
	char *sleep_argv[] = { "sleep", "100", NULL }, *true_argv[] = { "true", NULL };
	int sv[2];
	usec_t t0, quick_at = 0;

	ASSERT(loop_new(&l) == 0);
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	ASSERT(qga_new(l, sv[0], &g) == 0);
	t0 = now_usec();
	ASSERT(qga_exec(g, sleep_argv, 500 * USEC_PER_MSEC, g_done, &slow) == 0);
	ASSERT(qga_exec(g, true_argv, 0, g_done, &quick) == 0);
	/* Neither callback runs inside qga_exec(). */
	ASSERT_EQ(slow.done + quick.done, 0);
	while (!slow.done || !quick.done) {
		char *line = peer_line(l, sv[1]);

		ASSERT(line);
		fake_agent_answer(sv[1], &a, line);
		free(line);
		pump(l, 5 * USEC_PER_MSEC);
		if (quick.done && !quick_at) {
			quick_at = now_usec() - t0;
			ASSERT(!slow.done && !a.killed);
		}
	}
	/* The quick one was not held up behind the slow one. */
	ASSERT(quick_at < 400 * USEC_PER_MSEC);
	ASSERT_EQ(quick.res.error, 0);
	ASSERT_EQ(quick.res.status, 0);
	ASSERT(a.polls_10 > 1);
	/* Past its timeout the slow one was killed by pid, and reported as
	 * timed out once the agent saw it gone. */
	ASSERT_STREQ(a.kill_args, ",\"10\"]");
	ASSERT_EQ(slow.res.error, -ETIMEDOUT);
	ASSERT(!slow.res.error_text && !slow.res.left_running);
	qga_free(g);
	close(sv[1]);
	loop_free(l);
}

TEST(base64)
{
	char *out;
	size_t n;

	ASSERT(base64_decode("aGVsbG8K", 8, &out, &n) == 0);
	ASSERT_EQ(n, 6);
	ASSERT(memcmp(out, "hello\n", 6) == 0);
	free(out);
	ASSERT(base64_decode("", 0, &out, &n) == 0);
	ASSERT_EQ(n, 0);
	free(out);
	ASSERT(base64_decode("AA==", 4, &out, &n) == 0);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(out[0], 0);
	free(out);
	ASSERT(base64_decode("a$b", 3, &out, &n) == -EINVAL);
}

RUN_TESTS(T(loop_timers), T(loop_child_and_signal), T(jline_partial_and_bounds), T(qmp_negotiation_replies_events),
	  T(qga_sync_exec_status), T(qga_timeout), T(qga_concurrent_and_kill), T(base64))
