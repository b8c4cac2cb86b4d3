/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>
#include <sys/random.h>

#include "base64.h"
#include "jline.h"
#include "qga.h"

enum qga_state { QGA_IDLE, QGA_SYNC, QGA_EXEC, QGA_STATUS };

struct qga {
	struct loop *loop;
	struct jline *ch;
	/* Or a call transport; its replies wait in a queue of one, handed
	 * over from the loop so that no callback runs inside send_cmd(). */
	qga_call_fn call;
	void *call_userdata;
	json_t *reply;
	int reply_error; /* -ENOTCONN: the transport itself is down */
	struct loop_source *reply_timer;
	struct loop_source *timer;
	enum qga_state state;
	bool broken;
	json_int_t sync_id;
	json_int_t pid;
	usec_t deadline, sync_deadline, poll_delay;
	char **argv;
	qga_exec_cb cb;
	void *userdata;
};

static void finish(struct qga *g, struct qga_result *res)
{
	qga_exec_cb cb = g->cb;
	void *ud = g->userdata;

	g->state = QGA_IDLE;
	g->cb = NULL;
	loop_timer_set(g->timer, 0);
	strv_free(g->argv);
	g->argv = NULL;
	if (cb)
		cb(g, res, ud);
}

static void fail(struct qga *g, int error, const char *text)
{
	struct qga_result res = { .error = error, .error_text = text };

	finish(g, &res);
}

static int call_cmd(struct qga *g, json_t *m)
{
	_cleanup_free_ char *text = json_dumps(m, JSON_COMPACT), *reply = NULL;
	const char *why = NULL;
	int r;

	if (!text)
		return -ENOMEM;
	r = g->call(g->call_userdata, text, &reply, &why);
	g->reply_error = r == -ENOTCONN ? r : 0;
	json_decref(g->reply);
	if (r == 0)
		g->reply = json_loads(reply, 0, NULL);
	else
		g->reply = json_pack("{s:{s:s, s:i}}", "error", "desc", why ? why : strerror(-r), "errno", -r);
	if (!g->reply)
		g->reply = json_pack("{s:{s:s}}", "error", "desc", "the guest agent's reply is not JSON");
	return loop_timer_set(g->reply_timer, now_usec());
}

/* Takes args, also on failure. */
static int send_cmd(struct qga *g, const char *cmd, json_t *args)
{
	_cleanup_(json_decrefp) json_t *owned = args, *m = json_pack("{s:s}", "execute", cmd);

	if (!m || (args && json_object_set_new(m, "arguments", TAKE_PTR(owned)) < 0))
		return -ENOMEM;
	return g->call ? call_cmd(g, m) : jline_send(g->ch, m);
}

static int send_sync(struct qga *g)
{
	uint32_t rnd = 0;
	int r;

	/* The transport synchronises itself; only ask whether the agent is
	 * there yet. */
	if (g->call)
		return send_cmd(g, "guest-ping", NULL);

	/* A fresh random id per attempt: a late answer to an earlier
	 * attempt cannot be mistaken for this one. */
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)now_usec();
	g->sync_id = (json_int_t)(rnd & 0x7fffffff);
	/* 0xff makes the agent drop any half-parsed input. */
	r = jline_send_raw(g->ch, "\xff", 1);
	if (r == 0)
		r = send_cmd(g, "guest-sync-delimited", json_pack("{s:I}", "id", g->sync_id));
	jline_resync(g->ch);
	return r;
}

static void handle_status(struct qga *g, json_t *ret)
{
	_cleanup_free_ char *out = NULL, *err = NULL;
	struct qga_result res = {};
	json_t *v;
	int r;

	if (!json_is_true(json_object_get(ret, "exited"))) {
		/* Poll quickly at first, then back off to 200 ms. */
		g->poll_delay = g->poll_delay ? g->poll_delay * 2 : 10 * USEC_PER_MSEC;
		if (g->poll_delay > 200 * USEC_PER_MSEC)
			g->poll_delay = 200 * USEC_PER_MSEC;
		loop_timer_set(g->timer, now_usec() + g->poll_delay);
		return;
	}
	if ((v = json_object_get(ret, "signal")) && json_is_integer(v))
		res.status = 128 + (int)json_integer_value(v);
	else
		res.status = (int)json_integer_value(json_object_get(ret, "exitcode"));
	if ((v = json_object_get(ret, "out-data")) && json_is_string(v)) {
		r = base64_decode(json_string_value(v), json_string_length(v), &out, &res.out_len);
		if (r < 0)
			return fail(g, -EPROTO, "bad out-data from the agent");
		res.out = out;
	}
	if ((v = json_object_get(ret, "err-data")) && json_is_string(v)) {
		r = base64_decode(json_string_value(v), json_string_length(v), &err, &res.err_len);
		if (r < 0)
			return fail(g, -EPROTO, "bad err-data from the agent");
		res.err = err;
	}
	res.truncated = json_is_true(json_object_get(ret, "out-truncated")) ||
			json_is_true(json_object_get(ret, "err-truncated"));
	finish(g, &res);
}

static void on_msg(struct jline *c, json_t *msg, void *userdata)
{
	struct qga *g = userdata;
	json_t *ret = json_object_get(msg, "return"), *err = json_object_get(msg, "error");

	(void)c;
	switch (g->state) {
	case QGA_IDLE:
		return;
	case QGA_SYNC: {
		_cleanup_(json_decrefp) json_t *args = NULL, *a = NULL;

		/* Anything but the answer to the current sync is stale. */
		if (g->call ? !ret : !json_is_integer(ret) || json_integer_value(ret) != g->sync_id)
			return;
		args = json_pack("{s:s, s:b}", "path", g->argv[0], "capture-output", 1);
		a = json_array();
		for (size_t i = 1; args && a && g->argv[i]; i++)
			if (json_array_append_new(a, json_string(g->argv[i])) < 0)
				json_decrefp(&a);
		if (!args || !a || json_object_set_new(args, "arg", TAKE_PTR(a)) < 0)
			return fail(g, -ENOMEM, NULL);
		g->state = QGA_EXEC;
		if (send_cmd(g, "guest-exec", TAKE_PTR(args)) < 0)
			return fail(g, -ECONNRESET, NULL);
		return;
	}
	case QGA_EXEC:
		/* The agent could not start the command at all. */
		if (err)
			return fail(g, -ENOEXEC, json_string_value(json_object_get(err, "desc")));
		if (!json_is_integer(json_object_get(ret, "pid")))
			return fail(g, -EPROTO, "guest-exec returned no pid");
		g->pid = json_integer_value(json_object_get(ret, "pid"));
		g->state = QGA_STATUS;
		g->poll_delay = 0;
		send_cmd(g, "guest-exec-status", json_pack("{s:I}", "pid", g->pid));
		return;
	case QGA_STATUS:
		if (err)
			return fail(g, -EIO, json_string_value(json_object_get(err, "desc")));
		if (!json_is_object(ret))
			return;
		handle_status(g, ret);
		return;
	}
}

static void on_close(struct jline *c, int error, void *userdata)
{
	struct qga *g = userdata;

	(void)c;
	g->broken = true;
	if (g->state != QGA_IDLE)
		fail(g, -ECONNRESET, error ? strerror(-error) : "the guest agent connection closed");
}

static void on_timer(struct loop_source *s, void *userdata)
{
	struct qga *g = userdata;

	(void)s;
	if (g->state == QGA_IDLE)
		return;
	if (now_usec() >= g->deadline)
		return fail(g, -ETIMEDOUT, NULL);
	switch (g->state) {
	case QGA_SYNC:
		if (now_usec() >= g->sync_deadline)
			return fail(g, -ETIMEDOUT, "the guest agent does not answer");
		/* The agent may not be up yet; ask again. */
		send_sync(g);
		loop_timer_set(g->timer, now_usec() + USEC_PER_SEC);
		break;
	case QGA_STATUS:
		send_cmd(g, "guest-exec-status", json_pack("{s:I}", "pid", g->pid));
		/* Also wake for the overall deadline. */
		loop_timer_set(g->timer, g->deadline == UINT64_MAX ? 0 : g->deadline);
		break;
	default:
		loop_timer_set(g->timer, g->deadline == UINT64_MAX ? 0 : g->deadline);
	}
}

static void on_reply(struct loop_source *s, void *userdata)
{
	struct qga *g = userdata;
	json_t *m = g->reply;

	(void)s;
	g->reply = NULL;
	/* Not the agent's answer: nobody to ask (libvirtd away, domain gone). */
	if (g->reply_error && g->state != QGA_IDLE)
		fail(g, -ECONNRESET, json_string_value(json_object_get(json_object_get(m, "error"), "desc")));
	else if (m)
		on_msg(NULL, m, g);
	json_decref(m);
}

int qga_new_call(struct loop *l, qga_call_fn call, void *call_userdata, struct qga **ret)
{
	_cleanup_(qga_freep) struct qga *g = calloc(1, sizeof(*g));
	int r;

	if (!g)
		return -ENOMEM;
	g->loop = l;
	g->call = call;
	g->call_userdata = call_userdata;
	r = loop_add_timer(l, 0, on_timer, g, &g->timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_reply, g, &g->reply_timer);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(g);
	return 0;
}

int qga_new(struct loop *l, int fd, struct qga **ret)
{
	_cleanup_close_ int owned = fd; /* ours, even if this fails */
	_cleanup_(qga_freep) struct qga *g = calloc(1, sizeof(*g));
	int r;

	if (!g)
		return -ENOMEM;
	g->loop = l;
	/* guest-exec-status carries up to 16 MiB of output per stream, base64. */
	r = jline_new(l, TAKE_FD(owned), 64 * 1024 * 1024, on_msg, on_close, g, &g->ch);
	if (r == 0)
		r = loop_add_timer(l, 0, on_timer, g, &g->timer);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(g);
	return 0;
}

void qga_free(struct qga *g)
{
	if (!g)
		return;
	g->cb = NULL;
	loop_source_freep(&g->timer);
	loop_source_freep(&g->reply_timer);
	json_decref(g->reply);
	jline_free(g->ch);
	strv_free(g->argv);
	free(g);
}

int qga_exec(struct qga *g, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata)
{
	int r;

	if (g->state != QGA_IDLE)
		return -EBUSY;
	if (g->broken)
		return -ECONNRESET;
	if (!argv || !argv[0])
		return -EINVAL;
	/* JSON carries UTF-8 only; refuse rather than drop an argument. */
	for (size_t i = 0; argv[i]; i++) {
		json_t *t = json_string(argv[i]);

		if (!t)
			return -EILSEQ;
		json_decref(t);
	}
	g->argv = strv_copy(argv);
	if (!g->argv)
		return -ENOMEM;
	g->cb = cb;
	g->userdata = userdata;
	g->deadline = timeout ? now_usec() + timeout : UINT64_MAX;
	/* The agent must answer a sync within a minute, whatever the command's
	 * own timeout. */
	g->sync_deadline = now_usec() + 60 * USEC_PER_SEC;
	g->state = QGA_SYNC;
	r = send_sync(g);
	if (r < 0) {
		g->state = QGA_IDLE;
		g->cb = NULL;
		return r;
	}
	return loop_timer_set(g->timer, now_usec() + USEC_PER_SEC);
}
