/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>
#include <stdio.h>
#include <sys/random.h>

#include "base64.h"
#include "jline.h"
#include "qga.h"

/* An agent that does not answer a command this long has lost it (it was
 * restarted, or the line was garbled): resynchronise. */
#define REPLY_USEC (30 * USEC_PER_SEC)
/* How long a timed-out command may take to die once the kill is sent. */
#define KILL_GRACE_USEC (10 * USEC_PER_SEC)

/* The agent has no command to kill what guest-exec started, so a shell in
 * the guest does it: stop the command so that it forks no more, kill its
 * descendants (pgrep -P, where there is one), then the command itself.
 * A descendant that left the tree (a double-forked daemon) survives. */
static const char kill_script[] =
	"k() { for c in $(pgrep -P \"$1\" 2>/dev/null); do k \"$c\"; done; kill -KILL \"$1\"; }; "
	"kill -STOP \"$1\" && k \"$1\"";

enum job_state { JOB_QUEUED, JOB_STARTING, JOB_RUNNING };
enum pending { PENDING_NONE, PENDING_SYNC, PENDING_EXEC, PENDING_STATUS };

struct qga_job {
	struct qga_job *next;
	enum job_state state;
	bool expired;  /* past its deadline: being killed */
	bool kill_sent;
	bool internal; /* a kill: not itself killed when it times out */
	char **argv;
	json_int_t pid;
	usec_t deadline, sync_deadline, kill_deadline, next_poll, poll_delay;
	qga_exec_cb cb;
	void *userdata;
};

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
	bool broken;
	/* The agent protocol has no request ids: one command is in flight at
	 * a time, and its answer is the next one that arrives. The jobs take
	 * turns; each command is short, only the guest's commands run long. */
	bool synced;
	enum pending pending;
	struct qga_job *pending_job;
	usec_t sent_at, next_sync;
	json_int_t sync_id;
	struct qga_job *jobs;
};

static void pump(struct qga *g);

static void job_free(struct qga_job *j)
{
	strv_free(j->argv);
	free(j);
}

/* Unlinks j and hands res to its owner; j is gone afterwards. */
static void finish(struct qga *g, struct qga_job *j, struct qga_result *res)
{
	qga_exec_cb cb = j->cb;
	void *ud = j->userdata;

	for (struct qga_job **pp = &g->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	/* An answer still on its way for j is dropped. */
	if (g->pending_job == j)
		g->pending_job = NULL;
	job_free(j);
	if (cb)
		cb(g, res, ud);
}

static void fail(struct qga *g, struct qga_job *j, int error, const char *text)
{
	struct qga_result res = { .error = error, .error_text = text };

	finish(g, j, &res);
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
static int send_cmd(struct qga *g, enum pending what, struct qga_job *j, const char *cmd, json_t *args)
{
	_cleanup_(json_decrefp) json_t *owned = args, *m = json_pack("{s:s}", "execute", cmd);

	if (!m || (args && json_object_set_new(m, "arguments", TAKE_PTR(owned)) < 0))
		return -ENOMEM;
	g->pending = what;
	g->pending_job = j;
	g->sent_at = now_usec();
	return g->call ? call_cmd(g, m) : jline_send(g->ch, m);
}

static int send_sync(struct qga *g)
{
	uint32_t rnd = 0;
	int r;

	g->next_sync = now_usec() + USEC_PER_SEC;
	/* The transport synchronises itself; only ask whether the agent is
	 * there yet. */
	if (g->call)
		return send_cmd(g, PENDING_SYNC, NULL, "guest-ping", NULL);

	/* A fresh random id per attempt: a late answer to an earlier
	 * attempt cannot be mistaken for this one. */
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)now_usec();
	g->sync_id = (json_int_t)(rnd & 0x7fffffff);
	/* 0xff makes the agent drop any half-parsed input. */
	r = jline_send_raw(g->ch, "\xff", 1);
	if (r == 0)
		r = send_cmd(g, PENDING_SYNC, NULL, "guest-sync-delimited", json_pack("{s:I}", "id", g->sync_id));
	jline_resync(g->ch);
	return r;
}

static int send_exec(struct qga *g, struct qga_job *j)
{
	_cleanup_(json_decrefp) json_t *args = NULL, *a = NULL;

	args = json_pack("{s:s, s:b}", "path", j->argv[0], "capture-output", 1);
	a = json_array();
	for (size_t i = 1; args && a && j->argv[i]; i++)
		if (json_array_append_new(a, json_string(j->argv[i])) < 0)
			json_decrefp(&a);
	if (!args || !a || json_object_set_new(args, "arg", TAKE_PTR(a)) < 0)
		return -ENOMEM;
	j->state = JOB_STARTING;
	return send_cmd(g, PENDING_EXEC, j, "guest-exec", TAKE_PTR(args));
}

static struct qga_job *job_new(struct qga *g, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata)
{
	struct qga_job *j = calloc(1, sizeof(*j)), **t;
	usec_t now = now_usec();

	if (!j)
		return NULL;
	j->argv = strv_copy(argv);
	if (!j->argv) {
		free(j);
		return NULL;
	}
	j->cb = cb;
	j->userdata = userdata;
	j->deadline = timeout ? now + timeout : UINT64_MAX;
	/* The agent must answer a sync within a minute, whatever the command's
	 * own timeout. */
	j->sync_deadline = now + 60 * USEC_PER_SEC;
	for (t = &g->jobs; *t; t = &(*t)->next)
		;
	*t = j;
	return j;
}

/* j ran past its deadline: ask once more whether it still runs (a pid
 * that has exited unseen may already be another process's), kill it, and
 * report once it is gone (or after KILL_GRACE_USEC). */
static void expire(struct qga *g, struct qga_job *j)
{
	usec_t now = now_usec();

	j->expired = true;
	if (j->state == JOB_QUEUED || j->internal)
		return fail(g, j, -ETIMEDOUT, NULL);
	/* JOB_STARTING: this again once guest-exec has named the pid. */
	if (j->state != JOB_RUNNING)
		return;
	j->kill_deadline = now + KILL_GRACE_USEC;
	j->next_poll = now;
	j->poll_delay = 0;
}

static void send_kill(struct qga *g, struct qga_job *j)
{
	char pid[32];
	char *argv[] = { (char *)"/bin/sh", (char *)"-c", (char *)kill_script, (char *)"sh", pid, NULL };
	struct qga_job *k;

	j->kill_sent = true;
	snprintf(pid, sizeof(pid), "%lld", (long long)j->pid);
	/* If this cannot even be queued, the grace period runs out and the
	 * command is reported as left running. */
	k = job_new(g, argv, KILL_GRACE_USEC, NULL, NULL);
	if (k)
		k->internal = true;
}

static void handle_status(struct qga *g, struct qga_job *j, json_t *ret)
{
	_cleanup_free_ char *out = NULL, *err = NULL;
	struct qga_result res = {};
	json_t *v;
	int r;

	if (!json_is_true(json_object_get(ret, "exited"))) {
		if (j->expired && !j->kill_sent)
			send_kill(g, j);
		/* Poll quickly at first, then back off to 200 ms. */
		j->poll_delay = j->poll_delay ? j->poll_delay * 2 : 10 * USEC_PER_MSEC;
		if (j->poll_delay > 200 * USEC_PER_MSEC)
			j->poll_delay = 200 * USEC_PER_MSEC;
		j->next_poll = now_usec() + j->poll_delay;
		return;
	}
	/* One that ended on its own before the kill reports as usual. */
	if (j->kill_sent)
		return fail(g, j, -ETIMEDOUT, NULL);
	if ((v = json_object_get(ret, "signal")) && json_is_integer(v))
		res.status = 128 + (int)json_integer_value(v);
	else
		res.status = (int)json_integer_value(json_object_get(ret, "exitcode"));
	if ((v = json_object_get(ret, "out-data")) && json_is_string(v)) {
		r = base64_decode(json_string_value(v), json_string_length(v), &out, &res.out_len);
		if (r < 0)
			return fail(g, j, -EPROTO, "bad out-data from the agent");
		res.out = out;
	}
	if ((v = json_object_get(ret, "err-data")) && json_is_string(v)) {
		r = base64_decode(json_string_value(v), json_string_length(v), &err, &res.err_len);
		if (r < 0)
			return fail(g, j, -EPROTO, "bad err-data from the agent");
		res.err = err;
	}
	res.truncated = json_is_true(json_object_get(ret, "out-truncated")) ||
			json_is_true(json_object_get(ret, "err-truncated"));
	finish(g, j, &res);
}

/* The answer to the command in flight. */
static void handle_reply(struct qga *g, json_t *ret, json_t *err)
{
	struct qga_job *j = g->pending_job;
	enum pending what = g->pending;

	g->pending = PENDING_NONE;
	g->pending_job = NULL;
	switch (what) {
	case PENDING_NONE:
	case PENDING_SYNC:
		g->synced = true;
		return;
	case PENDING_EXEC:
		if (!j)
			return;
		/* The agent could not start the command at all. */
		if (err)
			return fail(g, j, -ENOEXEC, json_string_value(json_object_get(err, "desc")));
		if (!json_is_integer(json_object_get(ret, "pid")))
			return fail(g, j, -EPROTO, "guest-exec returned no pid");
		j->pid = json_integer_value(json_object_get(ret, "pid"));
		j->state = JOB_RUNNING;
		j->next_poll = now_usec();
		if (j->expired)
			expire(g, j);
		return;
	case PENDING_STATUS:
		if (!j)
			return;
		if (err)
			return fail(g, j, -EIO, json_string_value(json_object_get(err, "desc")));
		if (json_is_object(ret))
			handle_status(g, j, ret);
		return;
	}
}

static void on_msg(struct jline *c, json_t *msg, void *userdata)
{
	struct qga *g = userdata;
	json_t *ret = json_object_get(msg, "return"), *err = json_object_get(msg, "error");

	(void)c;
	if (g->pending == PENDING_NONE)
		return;
	/* While synchronising, anything but the answer to the current sync is
	 * stale. */
	if (g->pending == PENDING_SYNC &&
	    (g->call ? !ret : !json_is_integer(ret) || json_integer_value(ret) != g->sync_id))
		return;
	handle_reply(g, ret, err);
	pump(g);
}

static void on_close(struct jline *c, int error, void *userdata)
{
	struct qga *g = userdata;

	(void)c;
	g->broken = true;
	g->pending = PENDING_NONE;
	g->pending_job = NULL;
	while (g->jobs)
		fail(g, g->jobs, -ECONNRESET, error ? strerror(-error) : "the guest agent connection closed");
	loop_timer_set(g->timer, 0);
}

/* One job whose time is up, or NULL. */
static struct qga_job *job_due(struct qga *g, usec_t now)
{
	for (struct qga_job *j = g->jobs; j; j = j->next)
		if ((!j->expired && now >= j->deadline) || (j->expired && j->kill_deadline && now >= j->kill_deadline) ||
		    (j->state == JOB_QUEUED && !g->synced && now >= j->sync_deadline))
			return j;
	return NULL;
}

static void on_timer(struct loop_source *s, void *userdata)
{
	struct qga *g = userdata;
	struct qga_job *j;
	usec_t now = now_usec();

	(void)s;
	if (g->pending == PENDING_SYNC && now >= g->next_sync) {
		/* The agent may not be up yet; ask again. */
		g->pending = PENDING_NONE;
	} else if (g->pending != PENDING_NONE && now >= g->sent_at + REPLY_USEC) {
		j = g->pending_job;
		g->synced = false;
		g->pending = PENDING_NONE;
		g->pending_job = NULL;
		if (j && j->state == JOB_STARTING)
			fail(g, j, -EPROTO, "the guest agent did not answer guest-exec");
	}
	while ((j = job_due(g, now))) {
		if (!j->expired && now >= j->deadline)
			expire(g, j);
		else if (j->expired) {
			struct qga_result res = { .error = -ETIMEDOUT, .left_running = true };

			finish(g, j, &res);
		} else
			fail(g, j, -ETIMEDOUT, "the guest agent does not answer");
	}
	pump(g);
}

static void on_reply(struct loop_source *s, void *userdata)
{
	struct qga *g = userdata;
	json_t *m = g->reply;

	(void)s;
	g->reply = NULL;
	/* Not the agent's answer: nobody to ask (libvirtd away, domain gone). */
	if (g->reply_error) {
		const char *why = json_string_value(json_object_get(json_object_get(m, "error"), "desc"));

		g->pending = PENDING_NONE;
		g->pending_job = NULL;
		while (g->jobs)
			fail(g, g->jobs, -ECONNRESET, why);
	} else if (m)
		on_msg(NULL, m, g);
	json_decref(m);
}

static void set_wake(usec_t *wake, usec_t t)
{
	if (t && t != UINT64_MAX && (!*wake || t < *wake))
		*wake = t;
}

/* Sends the next command if none is in flight, and arms the timer for
 * whatever comes due next. */
static void pump(struct qga *g)
{
	usec_t now = now_usec(), wake = 0;
	struct qga_job *j = NULL;
	int r = 0;

	if (g->broken)
		return;
	if (!g->jobs) {
		/* Synchronise again for the next command, at once: the agent
		 * may have been restarted in between. */
		g->synced = false;
		g->next_sync = 0;
	} else if (g->pending == PENDING_NONE && !g->synced) {
		if (now >= g->next_sync)
			r = send_sync(g);
	} else if (g->pending == PENDING_NONE) {
		for (j = g->jobs; j && j->state != JOB_QUEUED; j = j->next)
			;
		if (j)
			r = send_exec(g, j);
		else {
			for (j = g->jobs; j && !(j->state == JOB_RUNNING && now >= j->next_poll); j = j->next)
				;
			if (j)
				r = send_cmd(g, PENDING_STATUS, j, "guest-exec-status", json_pack("{s:I}", "pid", j->pid));
		}
	}
	if (r < 0) {
		/* The line is gone or memory is short: drop this attempt and
		 * resynchronise on the next tick. */
		g->pending = PENDING_NONE;
		g->pending_job = NULL;
		g->synced = false;
		if (j)
			return fail(g, j, r == -ENOMEM ? -ENOMEM : -ECONNRESET, NULL);
	}
	if (g->pending == PENDING_SYNC || (g->pending == PENDING_NONE && g->jobs && !g->synced))
		set_wake(&wake, g->next_sync);
	else if (g->pending != PENDING_NONE)
		set_wake(&wake, g->sent_at + REPLY_USEC);
	for (j = g->jobs; j; j = j->next) {
		set_wake(&wake, j->expired ? j->kill_deadline : j->deadline);
		if (j->state == JOB_QUEUED && !g->synced)
			set_wake(&wake, j->sync_deadline);
		if (j->state == JOB_RUNNING && g->pending == PENDING_NONE)
			set_wake(&wake, j->next_poll);
	}
	loop_timer_set(g->timer, wake);
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
	while (g->jobs) {
		struct qga_job *j = g->jobs;

		g->jobs = j->next;
		job_free(j);
	}
	loop_source_freep(&g->timer);
	loop_source_freep(&g->reply_timer);
	json_decref(g->reply);
	jline_free(g->ch);
	free(g);
}

void qga_cancel(struct qga *g, void *userdata)
{
	for (struct qga_job *j = g->jobs; j; j = j->next)
		if (j->userdata == userdata)
			j->cb = NULL;
}

int qga_exec(struct qga *g, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata)
{
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
	if (!job_new(g, argv, timeout, cb, userdata))
		return -ENOMEM;
	/* From the loop: cb never runs inside qga_exec(). */
	return loop_timer_set(g->timer, now_usec());
}
