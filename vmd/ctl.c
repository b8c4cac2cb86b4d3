/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client side of the control socket: vmd status, start, stop, restart,
 * reload, exec and logs. */
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "base64.h"
#include "cli.h"
#include "log.h"
#include "term.h"

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
};

static int conn_open(const struct host_config *host, struct conn *c)
{
	_cleanup_free_ char *path = path_join(host->run_dir, "vmd.sock");

	if (!path)
		return -ENOMEM;
	c->fd = unix_connect(path);
	if (c->fd < 0)
		return log_error_errno(c->fd, "cannot reach the daemon at %s: %m (is \"vmd daemon\" running?)", path);
	return 0;
}

static int conn_send(struct conn *c, json_t *req)
{
	_cleanup_free_ char *s = json_dumps(req, JSON_COMPACT);
	int r;

	if (!s)
		return -ENOMEM;
	r = write_all(c->fd, s, strlen(s));
	if (r == 0)
		r = write_all(c->fd, "\n", 1);
	return r;
}

/* A complete line already read: 1 with *ret set, 0 if there is none yet,
 * -EBADMSG for a line that is not JSON. */
static int conn_next(struct conn *c, json_t **ret)
{
	char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
	json_t *j;

	if (!nl)
		return 0;
	j = json_loadb(c->buf, (size_t)(nl - c->buf), 0, NULL);
	memmove(c->buf, nl + 1, c->len - (size_t)(nl + 1 - c->buf));
	c->len -= (size_t)(nl + 1 - c->buf);
	if (!j)
		return -EBADMSG;
	*ret = j;
	return 1;
}

/* One read() of what the daemon sent: 1, 0 at EOF, or -errno. */
static int conn_fill(struct conn *c)
{
	ssize_t n;

	if (c->cap - c->len < 65536) {
		char *b = realloc(c->buf, c->cap + 131072);

		if (!b)
			return -ENOMEM;
		c->buf = b;
		c->cap += 131072;
	}
	do
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->len += (size_t)n;
	return n > 0;
}

/* The next reply line: 1 with *ret set, 0 at EOF, or -errno (-EBADMSG:
 * a line that is not JSON). */
static int conn_recv(struct conn *c, json_t **ret)
{
	for (;;) {
		int r = conn_next(c, ret);

		if (r != 0)
			return r;
		r = conn_fill(c);
		if (r <= 0)
			return r;
	}
}

/* The next reply line, or NULL with the reason logged. */
static json_t *conn_recv_or_log(struct conn *c, const char *what)
{
	json_t *j = NULL;
	int r = conn_recv(c, &j);

	if (r == 0)
		log_error("the daemon closed the connection without %s", what);
	else if (r == -EBADMSG)
		log_error("the daemon sent something that is not JSON instead of %s", what);
	else if (r < 0)
		log_error_errno(r, "cannot read %s from the daemon: %m", what);
	return j;
}

static void conn_close(struct conn *c)
{
	c->fd = safe_close(c->fd);
	free(c->buf);
}

/* Sends one request (taking it, also on failure) and returns its (first)
 * reply. */
static json_t *request(const struct host_config *host, struct conn *c, json_t *req)
{
	_cleanup_(json_decrefp) json_t *owned = req;
	int r;

	if (conn_open(host, c) < 0)
		return NULL;
	r = conn_send(c, owned);
	if (r < 0) {
		log_error_errno(r, "cannot send the request to the daemon: %m");
		return NULL;
	}
	return conn_recv_or_log(c, "an answer");
}

static int fail_reply(json_t *rep)
{
	const char *err = json_string_value(json_object_get(rep, "error"));
	json_t *lines = json_object_get(rep, "errors");
	size_t i;
	json_t *l;

	if (json_is_array(lines))
		json_array_foreach(lines, i, l)
			printf("%s\n", json_string_value(l));
	fprintf(stderr, "vmd: error: %s\n", err ? err : "request failed");
	/* Asking about a VM that does not exist is bad input. */
	return err && (startswith(err, "no such VM") || startswith(err, "name:") || json_is_array(lines)) ?
		       EXIT_BAD_INPUT :
		       EXIT_RUNTIME;
}

static void format_duration(double s, char *buf, size_t n)
{
	if (s < 60)
		snprintf(buf, n, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
	else if (s < 86400)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
	else
		snprintf(buf, n, "%dd%02dh", (int)(s / 86400), (int)(s / 3600) % 24);
}

static int print_status(json_t *vms)
{
	size_t i;
	json_t *v;

	printf("%-20s %-16s %-5s %-12s %-8s %-9s %-8s %-7s %s\n", "NAME", "STATE", "READY", "HOST", "PID", "UPTIME",
	       "RESTARTS", "BOOT", "LAST EXIT");
	json_array_foreach(vms, i, v) {
		char up[32] = "-", boot[32] = "-", pid[32] = "-";
		json_t *b = json_object_get(v, "boot_time_s"), *p = json_object_get(v, "pid");
		double u = json_real_value(json_object_get(v, "uptime_s"));
		const char *le = json_string_value(json_object_get(v, "last_exit"));

		const char *host = json_string_value(json_object_get(v, "host"));
		const char *driver = json_string_value(json_object_get(v, "driver"));

		if (json_is_integer(p))
			snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(p));
		else if (driver && streq(driver, "libvirt") && u > 0)
			snprintf(pid, sizeof(pid), "libvirt"); /* libvirt's QEMU */
		if (u > 0)
			format_duration(u, up, sizeof(up));
		if (json_is_number(b))
			snprintf(boot, sizeof(boot), "%.2fs", json_number_value(b));
		printf("%-20s %-16s %-5s %-12s %-8s %-9s %-8lld %-7s %s\n", json_string_value(json_object_get(v, "name")),
		       json_string_value(json_object_get(v, "state")),
		       json_is_true(json_object_get(v, "ready")) ? "yes" : "no", host ? host : "-", pid, up,
		       (long long)json_integer_value(json_object_get(v, "restarts")), boot, le ? le : "-");
	}
	return EXIT_OK;
}

static int do_status(const struct host_config *host, const char *name, bool as_json)
{
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *rep = NULL;
	int r;

	rep = request(host, &c, name ? json_pack("{s:s, s:s}", "command", "status", "name", name) :
				       json_pack("{s:s}", "command", "status"));
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		r = fail_reply(rep);
	else if (as_json) {
		_cleanup_free_ char *s = json_dumps(json_object_get(rep, "vms"), JSON_INDENT(2));
		printf("%s\n", s ? s : "[]");
		r = EXIT_OK;
	} else
		r = print_status(json_object_get(rep, "vms"));
	return r;
}

static int do_simple(const struct host_config *host, const char *command, const char *name)
{
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *rep = NULL;
	int r = EXIT_OK;

	rep = request(host, &c, json_pack("{s:s, s:s}", "command", command, "name", name));
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		r = fail_reply(rep);
	else if (json_object_get(rep, "message"))
		fprintf(stderr, "%s: %s\n", name, json_string_value(json_object_get(rep, "message")));
	return r;
}

static int do_reload(const struct host_config *host)
{
	static const char *const keys[] = { "added", "removed", "changed", "unchanged" };
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *rep = request(host, &c, json_pack("{s:s}", "command", "reload"));
	int r = EXIT_OK;

	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		r = fail_reply(rep);
	else
		for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
			json_t *a = json_object_get(rep, keys[k]), *v;
			size_t i;

			printf("%s:", keys[k]);
			json_array_foreach(a, i, v)
				printf(" %s", json_string_value(v));
			printf("\n");
		}
	return r;
}

/* Returns once the daemon has closed the connection: it is exiting, with
 * every VM down. No daemon at all is nothing to do. */
static int do_shutdown(const struct host_config *host)
{
	_cleanup_free_ char *path = path_join(host->run_dir, "vmd.sock");
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *req = NULL, *rep = NULL;
	json_t *more;
	int r = EXIT_OK, q;

	if (!path)
		return EXIT_RUNTIME;
	c.fd = unix_connect(path);
	if (c.fd == -ENOENT || c.fd == -ECONNREFUSED) {
		fprintf(stderr, "vmd shutdown: no daemon runs for %s\n", host->run_dir);
		return EXIT_OK;
	}
	if (c.fd < 0) {
		log_error_errno(c.fd, "cannot reach the daemon at %s: %m", path);
		return EXIT_RUNTIME;
	}
	req = json_pack("{s:s}", "command", "shutdown");
	q = req ? conn_send(&c, req) : -ENOMEM;
	if (q < 0) {
		log_error_errno(q, "cannot send the request to the daemon: %m");
		return EXIT_RUNTIME;
	}
	rep = conn_recv_or_log(&c, "an answer");
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		r = fail_reply(rep);
	else
		fprintf(stderr, "vmd shutdown: %s\n", json_string_value(json_object_get(rep, "message")));
	/* Until the daemon closes the connection: it has exited. */
	while (r == EXIT_OK && conn_recv(&c, &more) > 0)
		json_decref(more);
	return r;
}

static int write_b64(FILE *f, json_t *v)
{
	_cleanup_free_ char *out = NULL;
	size_t n = 0;

	if (!json_is_string(v))
		return 0;
	if (base64_decode(json_string_value(v), json_string_length(v), &out, &n) < 0)
		return -EPROTO;
	if (n && fwrite(out, 1, n, f) != n)
		return -EIO;
	fflush(f);
	return 0;
}

static int do_exec(const struct host_config *host, const char *name, char **argv, unsigned timeout)
{
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *args = json_array(), *rep = NULL;
	int r;

	for (size_t i = 0; argv[i]; i++) {
		json_t *s = json_string(argv[i]);

		if (!s) {
			fprintf(stderr, "vmd exec: argument \"%s\" is not valid UTF-8\n", argv[i]);
			return EXIT_BAD_INPUT;
		}
		json_array_append_new(args, s);
	}
	rep = request(host, &c, json_pack("{s:s, s:s, s:o, s:i}", "command", "exec", "name", name, "argv",
					  TAKE_PTR(args), "timeout_s", (int)timeout));
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok"))) {
		const char *err = json_string_value(json_object_get(rep, "error"));

		if (json_is_true(json_object_get(rep, "timed_out"))) {
			/* Like timeout(1). */
			fprintf(stderr, "vmd: error: %s\n", err ? err : "the command timed out");
			r = EXIT_TIMEOUT;
		} else if (err && startswith(err, "cannot run the command")) {
			fprintf(stderr, "vmd: error: %s\n", err);
			r = EXIT_NOT_FOUND;
		} else
			r = fail_reply(rep);
	} else {
		write_b64(stdout, json_object_get(rep, "stdout"));
		write_b64(stderr, json_object_get(rep, "stderr"));
		r = (int)json_integer_value(json_object_get(rep, "status"));
	}
	return r;
}

static int do_logs(const struct host_config *host, const char *name, bool follow)
{
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *rep = NULL;
	json_t *msg;
	int r = EXIT_OK, q;

	rep = request(host, &c, json_pack("{s:s, s:s, s:b}", "command", "logs", "name", name, "follow", follow));
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		return fail_reply(rep);
	while ((q = conn_recv(&c, &msg)) > 0) {
		bool eof = json_is_true(json_object_get(msg, "eof"));

		if (write_b64(stdout, json_object_get(msg, "data")) < 0)
			r = EXIT_RUNTIME;
		json_decref(msg);
		if (eof || r != EXIT_OK)
			break;
	}
	if (q < 0) {
		log_error_errno(q, "reading the log from the daemon: %m");
		r = EXIT_RUNTIME;
	}
	return r;
}

/* What the console session does next, from one daemon line. */
enum console_step { CONSOLE_GO_ON, CONSOLE_DONE, CONSOLE_LOST };

static void console_notice(bool tty, const char *text)
{
	fprintf(stderr, "%svmd: %s%s", tty ? "\r\n" : "", text, tty ? "\r\n" : "\n");
	fflush(stderr);
}

static enum console_step console_line(json_t *msg, bool tty)
{
	const char *ev = json_string_value(json_object_get(msg, "event"));
	const char *text = json_string_value(json_object_get(msg, "message"));
	json_t *data = json_object_get(msg, "console");

	if (data) {
		_cleanup_free_ char *out = NULL;
		size_t n = 0;

		if (base64_decode(json_string_value(data), json_string_length(data), &out, &n) < 0)
			return CONSOLE_LOST;
		if (n && write_all(STDOUT_FILENO, out, n) < 0)
			return CONSOLE_LOST;
		return CONSOLE_GO_ON;
	}
	if (!ev) {
		const char *err = json_string_value(json_object_get(msg, "error"));

		if (err)
			console_notice(tty, err);
		return CONSOLE_GO_ON;
	}
	console_notice(tty, text ? text : ev);
	if (streq(ev, "restarted"))
		return CONSOLE_GO_ON;
	return streq(ev, "ended") ? CONSOLE_DONE : CONSOLE_LOST;
}

static int console_send(struct conn *c, const char *buf, size_t n)
{
	_cleanup_free_ char *b64 = base64_encode(buf, n);
	_cleanup_(json_decrefp) json_t *req = b64 ? json_pack("{s:s, s:s}", "command", "input", "data", b64) : NULL;

	return req ? conn_send(c, req) : -ENOMEM;
}

/* After standard input ends (a script), the output goes on until the
 * guest has been quiet this long. */
#define CONSOLE_LINGER_MS 1000

static int do_console(const struct host_config *host, const char *name, bool read_only, bool force, int escape)
{
	_cleanup_(conn_close) struct conn c = { .fd = -EBADF };
	_cleanup_(json_decrefp) json_t *rep = NULL;
	bool tty = isatty(STDIN_FILENO), in_open = true;
	char esc[3];
	int r = EXIT_OK;

	rep = request(host, &c, json_pack("{s:s, s:s, s:b, s:b}", "command", "console", "name", name, "read_only",
					  read_only, "force", force));
	if (!rep)
		return EXIT_RUNTIME;
	if (!json_is_true(json_object_get(rep, "ok")))
		return fail_reply(rep);
	term_format_escape(escape, esc);
	/* Raw first: once this is on screen, the keys go to the guest. */
	if (tty && term_raw(STDIN_FILENO) < 0)
		tty = false;
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "vmd: connected to %s's console%s; %s detaches%s", name, read_only ? " (read-only)" : "",
			esc, tty ? "\r\n" : "\n");
	for (;;) {
		struct pollfd p[2] = { { .fd = c.fd, .events = POLLIN }, { .fd = STDIN_FILENO, .events = POLLIN } };
		int k, timeout = in_open ? -1 : CONSOLE_LINGER_MS;
		enum console_step step = CONSOLE_GO_ON;
		json_t *msg;

		/* Lines that came along with the reply (the backlog) first. */
		while (step == CONSOLE_GO_ON && (k = conn_next(&c, &msg)) > 0) {
			step = console_line(msg, tty);
			json_decref(msg);
		}
		if (k < 0 || step != CONSOLE_GO_ON) {
			r = step == CONSOLE_DONE ? EXIT_OK : EXIT_RUNTIME;
			break;
		}
		k = poll(p, in_open ? 2 : 1, timeout);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = EXIT_RUNTIME;
			break;
		}
		if (k == 0)
			break; /* stdin ended and the guest went quiet */
		if (p[0].revents) {
			k = conn_fill(&c);
			if (k <= 0) {
				console_notice(tty, "the daemon closed the connection");
				r = EXIT_RUNTIME;
				break;
			}
		}

		if (in_open && p[1].revents) {
			char buf[4096], *e;
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				in_open = false;
				continue;
			}
			e = tty ? memchr(buf, escape, (size_t)n) : NULL;
			if (!read_only && (e ? e - buf : n) > 0 && console_send(&c, buf, (size_t)(e ? e - buf : n)) < 0) {
				console_notice(tty, "cannot send to the daemon");
				r = EXIT_RUNTIME;
				break;
			}
			if (e) {
				if (tty)
					term_restore();
				fprintf(stderr, "\nvmd: detached from %s's console\n", name);
				break;
			}
		}
	}
	term_restore();
	return r;
}

static void usage(FILE *f, const char *cmd)
{
	fprintf(f,
		"Usage: vmd [-c SETTINGS] %s\n\n"
		"  vmd status [NAME] [--json]   state, pid, uptime, restarts, ready, boot time, last exit\n"
		"  vmd start|stop|restart NAME  and wait until it is ready (start, restart) or down (stop)\n"
		"  vmd reload                   re-read the definitions and apply the difference\n"
		"  vmd exec [--timeout SEC] NAME -- CMD ARG...   run a command in the guest\n"
		"  vmd logs NAME [-f]           console, QEMU and virtiofsd output of the VM\n"
		"  vmd console NAME [--read-only] [--force] [--escape ^X]\n"
		"                               the VM's serial console; Ctrl-] (or ^X) detaches.\n"
		"                               Without a terminal: stdin to the guest, its output\n"
		"                               to stdout until stdin ends and it is quiet for 1 s\n"
		"  vmd shutdown                 power every VM off, stop the daemon, wait for both\n\n"
		"They talk to \"vmd daemon\" through <run_dir>/vmd.sock.\n",
		cmd);
}

int cmd_ctl(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "follow", no_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 't' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "force", no_argument, NULL, 'F' },
		{ "escape", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_host_config_ struct host_config *host = NULL;
	const char *cmd = argv[0];
	bool as_json = false, follow = false, read_only = false, force = false;
	int escape = TERM_ESCAPE_DEFAULT;
	unsigned long timeout = 0;
	char **rest;
	int nrest, c;

	optind = 1;
	/* Options after the name too, except for exec (the guest command's
	 * own options follow it). */
	while ((c = getopt_long(argc, argv, streq(cmd, "exec") ? "+c:jft:rh" : "c:jft:rh", options, NULL)) >= 0)
		switch (c) {
		case 'r':
			read_only = true;
			break;
		case 'F':
			force = true;
			break;
		case 'e':
			if (term_parse_escape(optarg, &escape) < 0) {
				fprintf(stderr, "vmd %s: --escape: expected ^X or ctrl-X (a control key), got \"%s\"\n",
					cmd, optarg);
				return EXIT_BAD_INPUT;
			}
			break;
		case 'c':
			config = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'f':
			follow = true;
			break;
		case 't': {
			char *end;

			timeout = strtoul(optarg, &end, 10);
			if (!*optarg || *end || timeout > 86400 * 365) {
				fprintf(stderr, "vmd %s: --timeout: expected seconds\n", cmd);
				return EXIT_BAD_INPUT;
			}
			break;
		}
		case 'h':
			usage(stdout, cmd);
			return EXIT_OK;
		default:
			usage(stderr, cmd);
			return EXIT_BAD_INPUT;
		}
	rest = argv + optind;
	nrest = argc - optind;
	/* Options may also follow the name: vmd logs edge -f. */
	if (nrest > 1 && streq(cmd, "logs") && (streq(rest[1], "-f") || streq(rest[1], "--follow"))) {
		follow = true;
		nrest--;
	}
	if (nrest > 1 && streq(cmd, "status") && streq(rest[1], "--json")) {
		as_json = true;
		nrest--;
	}

	if (streq(cmd, "status")) {
		if (nrest > 1) {
			usage(stderr, cmd);
			return EXIT_BAD_INPUT;
		}
	} else if (streq(cmd, "reload") || streq(cmd, "shutdown")) {
		if (nrest != 0) {
			usage(stderr, cmd);
			return EXIT_BAD_INPUT;
		}
	} else if (streq(cmd, "exec")) {
		if (nrest < 3 || !streq(rest[1], "--")) {
			fprintf(stderr, "Usage: vmd exec [--timeout SEC] NAME -- CMD [ARG...]\n");
			return EXIT_BAD_INPUT;
		}
	} else if (nrest != 1) {
		usage(stderr, cmd);
		return EXIT_BAD_INPUT;
	}
	if (nrest >= 1 && check_name(rest[0])) {
		fprintf(stderr, "vmd %s: \"%s\" is not a VM name: %s\n", cmd, rest[0], check_name(rest[0]));
		return EXIT_BAD_INPUT;
	}
	if (cli_load_host(config, &host) < 0)
		return EXIT_BAD_INPUT;

	if (streq(cmd, "status"))
		return do_status(host, nrest ? rest[0] : NULL, as_json);
	if (streq(cmd, "reload"))
		return do_reload(host);
	if (streq(cmd, "shutdown"))
		return do_shutdown(host);
	if (streq(cmd, "exec"))
		return do_exec(host, rest[0], rest + 2, (unsigned)timeout);
	if (streq(cmd, "logs"))
		return do_logs(host, rest[0], follow);
	if (streq(cmd, "console")) {
		if (read_only && force) {
			fprintf(stderr, "vmd console: --read-only and --force exclude each other\n");
			return EXIT_BAD_INPUT;
		}
		return do_console(host, rest[0], read_only, force, escape);
	}
	return do_simple(host, cmd, rest[0]);
}
