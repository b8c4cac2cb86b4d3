/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "jline.h"
#include "qmp.h"

struct pending {
	json_int_t id;
	json_t *msg; /* not yet sent, or NULL once sent */
	qmp_reply_cb cb;
	void *userdata;
	struct pending *next;
};

struct qmp {
	struct jline *ch;
	qmp_event_cb on_event;
	qmp_close_cb on_close;
	void *userdata;
	bool greeted, ready, closed;
	/* Callbacks may free the client: then freeing waits until they return. */
	int busy;
	bool free_pending;
	json_int_t next_id;
	struct pending *pending; /* in order */
};

static void send_queued(struct qmp *q)
{
	for (struct pending *p = q->pending; p; p = p->next)
		if (p->msg) {
			jline_send(q->ch, p->msg);
			json_decref(p->msg);
			p->msg = NULL;
		}
}

/* qmp_free() from a callback clears the remaining callbacks, so this
 * never calls into a freed owner. */
static void fail_pending(struct qmp *q, int error, const char *desc)
{
	while (q->pending) {
		struct pending *p = q->pending;

		q->pending = p->next;
		json_decref(p->msg);
		if (p->cb)
			p->cb(q, NULL, error, desc, p->userdata);
		free(p);
	}
}

static void fail_all(struct qmp *q)
{
	fail_pending(q, -ECONNRESET, "QMP connection closed");
}

static void on_caps(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	(void)ret;
	(void)userdata;
	if (error == -ECONNRESET)
		return; /* fail_all() tells the others */
	if (error) {
		/* Refused: nothing queued can ever be sent. */
		q->closed = true;
		fail_pending(q, -EIO, desc ? desc : "QMP negotiation failed");
		return;
	}
	q->ready = true;
	send_queued(q);
}

/* Takes args, also on failure. */
static int enqueue(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb, void *userdata,
		   bool front)
{
	_cleanup_(json_decrefp) json_t *owned = args, *msg = NULL;
	_cleanup_free_ struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->id = ++q->next_id;
	msg = json_pack("{s:s, s:I}", "execute", cmd, "id", p->id);
	if (!msg || (args && json_object_set_new(msg, "arguments", TAKE_PTR(owned)) < 0))
		return -ENOMEM;
	p->msg = TAKE_PTR(msg);
	p->cb = cb;
	p->userdata = userdata;
	if (front) {
		p->next = q->pending;
		q->pending = TAKE_PTR(p);
	} else {
		struct pending **t = &q->pending;

		while (*t)
			t = &(*t)->next;
		*t = TAKE_PTR(p);
	}
	return 0;
}

static void dispatch_msg(struct qmp *q, json_t *msg);
static void qmp_free_now(struct qmp *q);

static void on_msg(struct jline *c, json_t *msg, void *userdata)
{
	struct qmp *q = userdata;

	(void)c;
	q->busy++;
	dispatch_msg(q, msg);
	if (--q->busy == 0 && q->free_pending)
		qmp_free_now(q);
}

static void dispatch_msg(struct qmp *q, json_t *msg)
{
	json_t *id, *v;

	if (!q->greeted) {
		if (!json_object_get(msg, "QMP"))
			return;
		q->greeted = true;
		if (enqueue(q, "qmp_capabilities", NULL, on_caps, NULL, true) == 0) {
			/* Only the negotiation goes out before the others. */
			jline_send(q->ch, q->pending->msg);
			json_decref(q->pending->msg);
			q->pending->msg = NULL;
		}
		return;
	}
	if ((v = json_object_get(msg, "event"))) {
		if (q->on_event && json_is_string(v))
			q->on_event(q, json_string_value(v), json_object_get(msg, "data"), q->userdata);
		return;
	}
	id = json_object_get(msg, "id");
	if (!json_is_integer(id))
		return;
	for (struct pending **pp = &q->pending; *pp; pp = &(*pp)->next) {
		struct pending *p = *pp;
		json_t *err;

		if (p->id != json_integer_value(id))
			continue;
		*pp = p->next;
		err = json_object_get(msg, "error");
		if (p->cb) {
			if (err) {
				const char *desc = json_string_value(json_object_get(err, "desc"));
				p->cb(q, NULL, -EIO, desc ? desc : "QMP error", p->userdata);
			} else
				p->cb(q, json_object_get(msg, "return"), 0, NULL, p->userdata);
		}
		free(p);
		return;
	}
}

static void on_close(struct jline *c, int error, void *userdata)
{
	struct qmp *q = userdata;

	(void)c;
	(void)error;
	q->closed = true;
	q->ready = false;
	q->busy++;
	fail_all(q);
	if (q->on_close && !q->free_pending)
		q->on_close(q, q->userdata);
	if (--q->busy == 0 && q->free_pending)
		qmp_free_now(q);
}

int qmp_new(struct loop *l, int fd, qmp_event_cb on_event, qmp_close_cb on_close_cb, void *userdata,
	    struct qmp **ret)
{
	_cleanup_close_ int owned = fd; /* ours, even if this fails */
	_cleanup_(qmp_freep) struct qmp *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->on_event = on_event;
	q->on_close = on_close_cb;
	q->userdata = userdata;
	r = jline_new(l, TAKE_FD(owned), 1024 * 1024, on_msg, on_close, q, &q->ch);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(q);
	return 0;
}

static void qmp_free_now(struct qmp *q)
{
	fail_all(q);
	jline_free(q->ch);
	free(q);
}

void qmp_free(struct qmp *q)
{
	if (!q)
		return;
	/* Callbacks of a dying client must not reach a dying owner. */
	for (struct pending *p = q->pending; p; p = p->next)
		p->cb = NULL;
	q->on_event = NULL;
	q->on_close = NULL;
	if (q->busy) {
		q->free_pending = true;
		return;
	}
	qmp_free_now(q);
}

int qmp_command(struct qmp *q, const char *cmd, json_t *args, qmp_reply_cb cb, void *userdata)
{
	int r;

	if (q->closed) {
		json_decref(args);
		return -ENOTCONN;
	}
	r = enqueue(q, cmd, args, cb, userdata, false);
	if (r < 0)
		return r;
	if (q->ready)
		send_queued(q);
	return 0;
}

bool qmp_is_ready(const struct qmp *q)
{
	return q->ready;
}
