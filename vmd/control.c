/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "base64.h"
#include "console.h"
#include "control.h"
#include "jline.h"
#include "log.h"

#define FOLLOW_USEC (200 * USEC_PER_MSEC)
#define LOG_CHUNK (48 * 1024)

struct client;

/* One outstanding asynchronous request: the userdata for the manager. */
struct request {
	struct client *client;
	json_t *id;
	json_int_t timeout_s; /* exec */
	struct request *next;
};

struct client {
	struct control *c;
	struct jline *ch;
	struct request *requests;
	/* vmd logs */
	int log_fd;
	uint64_t log_offset;
	bool follow;
	/* Attached to a VM's console (console.h). */
	struct console_client console;
	bool attached;
	/* Asked for "shutdown": the connection ends with the daemon. */
	bool waiting;
	bool closing;
	/* The last request received or answered, for the idle timeout and
	 * for choosing whom to evict. */
	usec_t active;
	struct loop_source *idle;
	struct client *next;
};

struct control {
	struct loop *loop;
	struct manager *m;
	control_reload_cb reload;
	void *reload_userdata;
	control_shutdown_cb shutdown;
	void *shutdown_userdata;
	char *path;
	int fd;
	struct loop_source *listen_src;
	struct loop_source *follow_timer;
	struct loop_source *reaper;
	gid_t gid;
	bool have_gid;
	usec_t idle_usec;
	struct client *clients;
	/* Those not closing. */
	size_t n_clients;
};

static void client_close(struct client *cl);

/* Nothing in progress that the connection waits for: it may be closed
 * after the idle timeout, or to make room. A half-sent line is nothing. */
static bool client_idle(const struct client *cl)
{
	return !cl->closing && !cl->requests && !cl->follow && !cl->waiting && !cl->attached;
}

static void client_touch(struct client *cl)
{
	cl->active = now_usec();
	loop_timer_set(cl->idle, cl->active + cl->c->idle_usec);
}

static void reply(struct client *cl, json_t *id, json_t *msg)
{
	if (!msg)
		return;
	if (id)
		json_object_set(msg, "id", id);
	/* A client that does not read its replies loses its connection, not
	 * the daemon its memory. */
	if (!cl->closing && jline_send(cl->ch, msg) == -ENOBUFS)
		client_close(cl);
	json_decref(msg);
}

static void reply_error(struct client *cl, json_t *id, const char *fmt, ...) _printf_(3, 4);
static void reply_error(struct client *cl, json_t *id, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	reply(cl, id, json_pack("{s:b, s:s}", "ok", 0, "error", buf));
}

static struct request *request_new(struct client *cl, json_t *id)
{
	struct request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->client = cl;
	r->id = json_incref(id);
	r->next = cl->requests;
	cl->requests = r;
	return r;
}

static void request_free(struct request *req)
{
	struct client *cl = req->client;

	for (struct request **pp = &cl->requests; *pp; pp = &(*pp)->next)
		if (*pp == req) {
			*pp = req->next;
			break;
		}
	json_decref(req->id);
	free(req);
	/* The idle time counts from the last answer. */
	if (!cl->requests && !cl->closing)
		client_touch(cl);
}

static void on_done(void *userdata, int error, const char *message)
{
	struct request *req = userdata;

	if (error)
		reply_error(req->client, req->id, "%s", message ? message : strerror(-error));
	else
		reply(req->client, req->id,
		      message ? json_pack("{s:b, s:s}", "ok", 1, "message", message) : json_pack("{s:b}", "ok", 1));
	request_free(req);
}

static void on_exec(struct qga *g, const struct qga_result *res, void *userdata)
{
	struct request *req = userdata;
	_cleanup_free_ char *out = NULL, *err = NULL;

	(void)g;
	if (res->error == -ETIMEDOUT && !res->error_text) {
		char msg[160];

		snprintf(msg, sizeof(msg), "the command did not finish within %lld s; %s", (long long)req->timeout_s,
			 res->left_running ? "it could not be killed and may still run in the guest"
					   : "it was killed");
		/* Its own field: clients tell it apart without parsing text. */
		reply(req->client, req->id, json_pack("{s:b, s:s, s:b}", "ok", 0, "error", msg, "timed_out", 1));
	} else if (res->error) {
		reply_error(req->client, req->id, "%s%s%s",
			    res->error == -ENOEXEC ? "cannot run the command: " : "",
			    res->error_text ? res->error_text : strerror(-res->error),
			    res->error == -ECONNRESET ? " (the VM stopped)" : "");
	} else {
		out = base64_encode(res->out ? res->out : "", res->out_len);
		err = base64_encode(res->err ? res->err : "", res->err_len);
		reply(req->client, req->id,
		      out && err ? json_pack("{s:b, s:i, s:s, s:s, s:b}", "ok", 1, "status", res->status, "stdout", out,
					     "stderr", err, "truncated", res->truncated)
				 : NULL);
	}
	request_free(req);
}

static void client_free(struct client *cl);

static void on_reap(struct loop_source *s, void *userdata)
{
	struct control *c = userdata;

	(void)s;
	for (struct client **pp = &c->clients; *pp;) {
		struct client *cl = *pp;

		if (!cl->closing) {
			pp = &cl->next;
			continue;
		}
		*pp = cl->next;
		client_free(cl);
	}
}

/* Freed from the loop, never under a callback that still uses it. */
static void client_close(struct client *cl)
{
	if (cl->attached) {
		manager_console_detach(cl->c->m, &cl->console);
		cl->attached = false;
	}
	if (!cl->closing)
		cl->c->n_clients--;
	cl->closing = true;
	cl->follow = false;
	loop_timer_set(cl->c->reaper, now_usec());
}

static void on_idle(struct loop_source *s, void *userdata)
{
	struct client *cl = userdata;

	(void)s;
	/* A busy client is touched again when its last request is answered. */
	if (client_idle(cl))
		client_close(cl);
}

/* Sends what the log has beyond the client's offset, a chunk at a time. */
static void send_log(struct client *cl)
{
	char buf[LOG_CHUNK];
	struct stat st;

	while (!cl->closing && jline_out_pending(cl->ch) < CONTROL_MAX_OUT / 2) {
		_cleanup_free_ char *b64 = NULL;
		ssize_t n;

		if (fstat(cl->log_fd, &st) == 0 && (uint64_t)st.st_size < cl->log_offset)
			cl->log_offset = 0; /* rotated: start over on the new file */
		n = pread(cl->log_fd, buf, sizeof(buf), (off_t)cl->log_offset);
		if (n <= 0)
			break;
		cl->log_offset += (uint64_t)n;
		b64 = base64_encode(buf, (size_t)n);
		reply(cl, NULL, b64 ? json_pack("{s:s}", "data", b64) : NULL);
	}
}

static void on_follow(struct loop_source *s, void *userdata)
{
	struct control *c = userdata;
	bool any = false;

	for (struct client *cl = c->clients; cl; cl = cl->next)
		if (cl->follow && !cl->closing) {
			send_log(cl);
			any = true;
		}
	if (any)
		loop_timer_set(s, now_usec() + FOLLOW_USEC);
}

static void cmd_logs(struct client *cl, json_t *id, const char *name, json_t *req)
{
	const char *path = manager_log_path(cl->c->m, name);
	json_t *follow = json_object_get(req, "follow");
	int fd;

	if (!path) {
		reply_error(cl, id, "no such VM: %s", name);
		return;
	}
	if (follow && !json_is_boolean(follow)) {
		reply_error(cl, id, "follow: must be a boolean");
		return;
	}
	if (cl->log_fd >= 0) {
		reply_error(cl, id, "this connection already streams a log");
		return;
	}
	fd = open_regular(path, O_RDONLY | O_NOFOLLOW, 0);
	if (fd < 0 && fd != -ENOENT) {
		reply_error(cl, id, "%s: %s", path, fd == -EBADFD ? "not a regular file" : strerror(-fd));
		return;
	}
	reply(cl, id, json_pack("{s:b}", "ok", 1));
	if (fd < 0) {
		/* No log yet: the VM never ran. */
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
	}
	cl->log_fd = fd;
	cl->log_offset = 0;
	send_log(cl);
	if (json_is_true(follow)) {
		cl->follow = true;
		loop_timer_set(cl->c->follow_timer, now_usec() + FOLLOW_USEC);
	} else {
		reply(cl, id, json_pack("{s:b}", "eof", 1));
	}
}

static void cmd_exec(struct client *cl, json_t *id, const char *name, json_t *req)
{
	json_t *args = json_object_get(req, "argv"), *t = json_object_get(req, "timeout_s"), *v;
	_cleanup_strv_free_ char **argv = NULL;
	struct request *r;
	size_t i;
	int e;

	if (!json_is_array(args) || json_array_size(args) == 0 || json_array_size(args) > 4096) {
		reply_error(cl, id, "argv: must be a non-empty array of strings");
		return;
	}
	json_array_foreach(args, i, v) {
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
			reply_error(cl, id, "argv[%zu]: must be a string without NUL bytes", i);
			return;
		}
		if (strv_extend(&argv, json_string_value(v)) < 0) {
			reply_error(cl, id, "out of memory");
			return;
		}
	}
	if (t && (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 86400 * 365)) {
		reply_error(cl, id, "timeout_s: must be 0..31536000");
		return;
	}
	r = request_new(cl, id);
	if (!r) {
		reply_error(cl, id, "out of memory");
		return;
	}
	r->timeout_s = t ? json_integer_value(t) : 0;
	e = manager_exec(cl->c->m, name, argv, t ? (usec_t)json_integer_value(t) * USEC_PER_SEC : 0, on_exec, r);
	if (e < 0) {
		request_free(r);
		reply_error(cl, id, "%s", e == -ENOENT ? "no such VM" : e == -ENOTCONN ? "the VM is not running (ready)" :
								      strerror(-e));
	}
}

static void console_output(struct console_client *cc, const char *buf, size_t n)
{
	struct client *cl = container_of(cc, struct client, console);
	_cleanup_free_ char *b64 = NULL;

	/* A client that stops reading fills its send buffer and is dropped
	 * (reply()); the guest and the daemon never wait for it. */
	for (size_t off = 0; off < n && !cl->closing; off += LOG_CHUNK) {
		b64 = mfree(b64);
		b64 = base64_encode(buf + off, MIN(n - off, (size_t)LOG_CHUNK));
		reply(cl, NULL, b64 ? json_pack("{s:s}", "console", b64) : NULL);
	}
}

static void console_event(struct console_client *cc, const char *kind, const char *text)
{
	struct client *cl = container_of(cc, struct client, console);

	/* Taken over or ended: the hub has let go of it already. */
	if (!streq(kind, "restarted") && cl->attached) {
		cl->attached = false;
		client_touch(cl);
	}
	reply(cl, NULL, json_pack("{s:s, s:s}", "event", kind, "message", text));
}

static const struct console_client_ops console_ops = {
	.output = console_output,
	.event = console_event,
};

static void cmd_console(struct client *cl, json_t *id, const char *name, json_t *req)
{
	json_t *ro = json_object_get(req, "read_only"), *force = json_object_get(req, "force");
	_cleanup_free_ char *error = NULL;
	int r;

	if ((ro && !json_is_boolean(ro)) || (force && !json_is_boolean(force))) {
		reply_error(cl, id, "read_only, force: must be booleans");
		return;
	}
	if (cl->attached || cl->follow) {
		reply_error(cl, id, "this connection already streams a console or a log");
		return;
	}
	cl->console.ops = &console_ops;
	r = manager_console_attach(cl->c->m, name, &cl->console, !json_is_true(ro), json_is_true(force), &error);
	if (r < 0) {
		reply(cl, id, json_pack("{s:b, s:s, s:b}", "ok", 0, "error", error ? error : strerror(-r), "busy",
					r == -EBUSY));
		return;
	}
	cl->attached = true;
	/* The reply first, then the backlog. */
	reply(cl, id, json_pack("{s:b}", "ok", 1));
	if (!cl->closing)
		manager_console_replay(cl->c->m, &cl->console);
}

static void cmd_input(struct client *cl, json_t *id, json_t *req)
{
	json_t *data = json_object_get(req, "data");
	_cleanup_free_ char *buf = NULL;
	size_t n = 0;
	int r;

	if (!json_is_string(data) || base64_decode(json_string_value(data), json_string_length(data), &buf, &n) < 0) {
		reply_error(cl, id, "data: must be base64");
		return;
	}
	if (!cl->attached) {
		reply_error(cl, id, "input: not attached to a console");
		return;
	}
	r = manager_console_input(cl->c->m, &cl->console, buf, n);
	/* Typing at a VM that is between boots, or faster than its UART:
	 * lost, as on a real serial line. Only a read-only client is told. */
	if (r == -EPERM)
		reply_error(cl, id, "input: this console is read-only");
}

static void dispatch(struct client *cl, json_t *req)
{
	json_t *id = json_object_get(req, "id"), *jname = json_object_get(req, "name");
	const char *cmd = json_string_value(json_object_get(req, "command"));
	const char *name = json_string_value(jname);
	struct control *c = cl->c;

	if (!cmd) {
		reply_error(cl, id, "command: required, a string");
		return;
	}
	if (streq(cmd, "input")) {
		cmd_input(cl, id, req);
		return;
	}
	if (jname && (!name || check_name(name))) {
		reply_error(cl, id, "name: must be a VM name");
		return;
	}
	if (streq(cmd, "status")) {
		json_t *vms = manager_status(c->m, name);

		if (!vms)
			reply_error(cl, id, "no such VM: %s", name);
		else
			reply(cl, id, json_pack("{s:b, s:o}", "ok", 1, "vms", vms));
		return;
	}
	if (streq(cmd, "reload")) {
		json_t *summary = NULL, *errors = NULL;

		if (c->reload(c->reload_userdata, &summary, &errors) < 0) {
			reply(cl, id, json_pack("{s:b, s:s, s:o}", "ok", 0, "error",
						"the definitions have errors; nothing was changed", "errors",
						errors ? errors : json_array()));
		} else {
			json_object_set_new(summary, "ok", json_true());
			reply(cl, id, summary);
		}
		return;
	}
	if (streq(cmd, "shutdown")) {
		if (!c->shutdown) {
			reply_error(cl, id, "shutdown: not supported here");
			return;
		}
		reply(cl, id, json_pack("{s:b, s:s}", "ok", 1, "message", "stopping every VM, then the daemon"));
		cl->waiting = true;
		c->shutdown(c->shutdown_userdata);
		return;
	}
	if (!name) {
		reply_error(cl, id, "name: required for %s", cmd);
		return;
	}
	if (streq(cmd, "start") || streq(cmd, "stop") || streq(cmd, "restart")) {
		struct request *r = request_new(cl, id);
		int (*fn)(struct manager *, const char *, manager_done_cb, void *) =
			streq(cmd, "start") ? manager_start : streq(cmd, "stop") ? manager_stop : manager_restart;

		if (!r) {
			reply_error(cl, id, "out of memory");
			return;
		}
		/* The reply comes through on_done, now or later. */
		fn(c->m, name, on_done, r);
		return;
	}
	if (streq(cmd, "exec")) {
		cmd_exec(cl, id, name, req);
		return;
	}
	if (streq(cmd, "logs")) {
		cmd_logs(cl, id, name, req);
		return;
	}
	if (streq(cmd, "console")) {
		cmd_console(cl, id, name, req);
		return;
	}
	reply_error(cl, id, "unknown command: %.64s", cmd);
}

static void on_msg(struct jline *ch, json_t *msg, void *userdata)
{
	struct client *cl = userdata;

	(void)ch;
	if (!cl->closing) {
		client_touch(cl);
		dispatch(cl, msg);
	}
	if (cl->closing)
		client_close(cl);
}

static void on_error(struct jline *ch, int error, void *userdata)
{
	struct client *cl = userdata;

	(void)ch;
	if (error == -EMSGSIZE) {
		reply_error(cl, NULL, "request longer than %d bytes", CONTROL_MAX_LINE);
		client_close(cl);
	} else
		reply_error(cl, NULL, "malformed request: expected one JSON object per line");
}

static void on_close(struct jline *ch, int error, void *userdata)
{
	struct client *cl = userdata;

	(void)ch;
	(void)error;
	cl->follow = false;
	client_close(cl);
}

static void client_free(struct client *cl)
{
	while (cl->requests) {
		struct request *r = cl->requests;

		manager_cancel(cl->c->m, r);
		request_free(r);
	}
	if (cl->attached)
		manager_console_detach(cl->c->m, &cl->console);
	jline_free(cl->ch);
	loop_source_freep(&cl->idle);
	safe_close(cl->log_fd);
	free(cl->console.who);
	free(cl);
}

static void client_freep(struct client **cl)
{
	if (*cl)
		client_free(*cl);
}

/* Closes the longest idle connections until a new one fits: all slots for
 * root, all but CONTROL_ROOT_RESERVE for the others, so root always gets
 * in unless root itself holds that many busy connections. */
static bool make_room(struct control *c, bool root)
{
	size_t max = root ? CONTROL_MAX_CLIENTS : CONTROL_MAX_CLIENTS - CONTROL_ROOT_RESERVE;
	bool evicted = false;

	while (c->n_clients >= max) {
		struct client *oldest = NULL;

		/* Newest first: on a tie, the last one seen is the oldest. */
		for (struct client *cl = c->clients; cl; cl = cl->next)
			if (client_idle(cl) && (!oldest || cl->active <= oldest->active))
				oldest = cl;
		if (!oldest)
			return false;
		client_close(oldest);
		evicted = true;
	}
	/* At once, not from the loop: a burst of connections must not pile
	 * up evicted ones. No client callback runs under us here. */
	if (evicted)
		on_reap(c->reaper, c);
	return true;
}

static int client_add(struct control *c, int fd, bool root)
{
	_cleanup_close_ int owned = fd; /* ours, even if this fails */
	_cleanup_(client_freep) struct client *cl = NULL;
	int r;

	if (!make_room(c, root)) {
		static const char busy[] = "{\"ok\":false,\"error\":\"too many clients\"}\n";

		(void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		return -EMFILE;
	}
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->c = c;
	cl->log_fd = -EBADF;
	{
		struct ucred cred;
		socklen_t len = sizeof(cred);

		if (getsockopt(owned, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			cl->console.who = xasprintf("uid %u (pid %d)", (unsigned)cred.uid, (int)cred.pid);
	}
	r = loop_add_timer(c->loop, 0, on_idle, cl, &cl->idle);
	if (r < 0)
		return r;
	r = jline_new(c->loop, TAKE_FD(owned), CONTROL_MAX_LINE, on_msg, on_close, cl, &cl->ch);
	if (r < 0)
		return r;
	jline_on_error(cl->ch, on_error);
	jline_set_max_out(cl->ch, CONTROL_MAX_OUT);
	client_touch(cl);
	cl->next = c->clients;
	c->clients = TAKE_PTR(cl);
	c->n_clients++;
	return 0;
}

int control_add_client(struct control *c, int fd)
{
	return client_add(c, fd, true);
}

static bool peer_allowed(struct control *c, int fd, bool *ret_root)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	*ret_root = cred.uid == 0;
	if (cred.uid == 0)
		return true;
	if (!c->have_gid)
		return false;
	if (cred.gid == c->gid)
		return true;
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == c->gid)
			return true;
	return false;
}

static void on_accept(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct control *c = userdata;

	(void)s;
	(void)revents;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		bool root = false;

		if (cfd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warning_errno(errno, "control socket: accept: %m");
			return;
		}
		if (!peer_allowed(c, cfd, &root)) {
			static const char denied[] = "{\"ok\":false,\"error\":\"permission denied\"}\n";

			(void)!send(cfd, denied, sizeof(denied) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			safe_close(cfd);
			continue;
		}
		client_add(c, cfd, root);
	}
}

static int control_alloc(struct loop *l, struct manager *m, uint32_t idle_timeout_s, control_reload_cb reload,
			 void *userdata, struct control **ret)
{
	_cleanup_(control_freep) struct control *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->loop = l;
	c->m = m;
	c->reload = reload;
	c->reload_userdata = userdata;
	c->fd = -EBADF;
	c->idle_usec = idle_timeout_s * USEC_PER_SEC;
	r = loop_add_timer(l, 0, on_follow, c, &c->follow_timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_reap, c, &c->reaper);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

int control_new_unbound(struct loop *l, struct manager *m, control_reload_cb reload, void *userdata,
			struct control **ret)
{
	return control_alloc(l, m, CONTROL_IDLE_TIMEOUT_DEFAULT_S, reload, userdata, ret);
}

int control_new(struct loop *l, struct manager *m, const struct host_config *host, control_reload_cb reload,
		void *userdata, struct control **ret)
{
	_cleanup_(control_freep) struct control *c = NULL;
	_cleanup_close_ int fd = -EBADF;
	struct group *g;
	int r;

	r = control_alloc(l, m, host->control_idle_timeout_s, reload, userdata, &c);
	if (r < 0)
		return r;
	c->path = path_join(host->run_dir, "vmd.sock");
	if (!c->path)
		return -ENOMEM;
	/* A socket that answers belongs to a live daemon: never cut it off.
	 * (The daemon lock should have caught that already.) control_free()
	 * unlinks the path only once c->fd is bound to it. */
	fd = unix_connect(c->path);
	if (fd >= 0)
		return -EADDRINUSE;
	c->fd = unix_listen(c->path);
	if (c->fd < 0)
		return c->fd;
	g = getgrnam(host->control_group);
	if (g) {
		c->gid = g->gr_gid;
		c->have_gid = true;
	}
	if (chown(c->path, 0, c->have_gid ? c->gid : 0) < 0 || chmod(c->path, 0660) < 0 ||
	    fd_nonblock(c->fd, true) < 0 ||
	    (r = loop_add_io(l, c->fd, EPOLLIN, on_accept, c, &c->listen_src)) < 0)
		return r < 0 ? r : -errno;
	*ret = TAKE_PTR(c);
	return 0;
}

void control_set_shutdown(struct control *c, control_shutdown_cb shutdown, void *userdata)
{
	c->shutdown = shutdown;
	c->shutdown_userdata = userdata;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	while (c->clients) {
		struct client *cl = c->clients;

		c->clients = cl->next;
		/* A reply queued just before the daemon ends (to "shutdown",
		 * when there was nothing to stop) still reaches its client. */
		if (cl->ch)
			jline_flush_final(cl->ch);
		client_free(cl);
	}
	loop_source_freep(&c->listen_src);
	loop_source_freep(&c->follow_timer);
	loop_source_freep(&c->reaper);
	if (c->fd >= 0 && c->path)
		unlink(c->path);
	safe_close(c->fd);
	free(c->path);
	free(c);
}

const char *control_path(const struct control *c)
{
	return c->path;
}
