/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmd's image init: the initrd's /init in the image guest (nix/image-guest.nix),
 * PID 1 for the VM's whole life. Static, libc only:
 *   cc -static -O2 -Wall -Wextra -o image-init image-init.c
 *
 * As PID 1 it builds the image's root (an overlay of the read-only virtiofs
 * tag vmd-image under a fresh tmpfs, at /sysroot), mounts what vmd lists on
 * the kernel command line (vmd-mounts.sh, the script every vmd guest runs),
 * brings up the network (vmd-net.sh), starts qemu-ga outside the image root,
 * runs the image's entrypoint as the image's user, reaps every orphan,
 * forwards a powerdown as the image's stop signal, and reports the
 * entrypoint's status on the io.vmd.notify port before it powers off.
 *
 * What to run comes from the QEMU fw_cfg entry opt/io.vmd/image (format in
 * image_parse() below; the host writes it). It is host input, but it is
 * parsed as if it were not: length cap, strict charset, strict escapes.
 *
 * `/init --enter -- CMD ARG...` (not PID 1; qemu-ga runs it for vmd exec):
 * CMD as root inside the image root, with the image's env and workdir.
 *
 * `/init --parse FILE` (not PID 1; tests): parse FILE as the entry, print
 * what would run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "image-proto.h"

#define FW_CFG_ENTRY "/sys/firmware/qemu_fw_cfg/by_name/" IMAGE_FW_CFG_NAME "/raw"
/* PID 1's copy for --enter: qemu-ga's children need no fw_cfg access. */
#define SAVED_ENTRY "/run/vmd/image.conf"
/* Written into the initrd by nix/builders/initrd.sh: store paths. */
#define GUEST_PATHS "/etc/vmd-image-guest"
#define ENTRY_MAX IMAGE_CONF_MAX
#define GROUPS_MAX 65536
#define SYSROOT "/sysroot"
#define DEFAULT_PATH IMAGE_DEFAULT_PATH

extern char **environ;

struct image {
	char **argv; /* NULL-terminated */
	size_t n_argv;
	char **env; /* NULL-terminated, room for PATH and HOME */
	size_t n_env;
	char *workdir;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t n_groups;
	int stop_signal;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* stderr is the console (PID 1) or qemu-ga's pipe (--enter). */
	if (write(STDERR_FILENO, "vmd-image-init: ", 16) < 0 || write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

/* ---- the fw_cfg entry ---------------------------------------------------- */

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes [s, s+len) into a new string. The raw value was already
 * checked to hold only 0x21..0x7e without ','. No decoded NUL: every value
 * ends up in a C string (argv, environ, a path). */
static char *decode(const char *s, size_t len, const char **why)
{
	char *out = malloc(len + 1), *o = out;

	if (!out) {
		*why = "out of memory";
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (len - i < 3 || unhex(s[i + 1]) < 0 || unhex(s[i + 2]) < 0) {
			*why = "bad percent escape";
			free(out);
			return NULL;
		}
		char c = (char)(unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
		if (c == '\0') {
			*why = "encoded NUL byte";
			free(out);
			return NULL;
		}
		*o++ = c;
		i += 2;
	}
	*o = '\0';
	return out;
}

/* A decimal id: digits only, no sign, no leading zeros but "0", at most
 * 4294967294 ((uid_t)-1 means "unchanged" to setuid and friends). */
static int parse_id(const char *s, uint32_t *ret)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > 4294967294u)
		return -1;
	*ret = (uint32_t)v;
	return 0;
}

static void image_free(struct image *im)
{
	if (im->argv)
		for (size_t i = 0; i < im->n_argv; i++)
			free(im->argv[i]);
	if (im->env)
		for (size_t i = 0; i < im->n_env; i++)
			free(im->env[i]);
	free(im->argv);
	free(im->env);
	free(im->workdir);
	free(im->groups);
	memset(im, 0, sizeof(*im));
}

/*
 * The entry: lines separated by '\n' (the last one may lack it), each
 * "KEY VALUE" with exactly one space; KEY is [a-z0-9-]+, VALUE percent-
 * encoded (every byte outside 0x21..0x7e, and '%' and ',', as %XX), so the
 * entry holds only 0x21..0x7e but ',', plus ' ' and '\n'. First line
 * "vmd-image 1". Keys: argv (repeated, at least one), env (repeated,
 * NAME=value), workdir (absolute, default /), uid, gid (default 0), groups
 * (N,N,... decoded; may be empty or absent), stop-signal (default 15).
 * Other keys are ignored; single-valued keys may appear once.
 * On error: -1 and a message in err.
 */
static int image_parse(const char *buf, size_t len, struct image *im, char *err, size_t errlen)
{
	size_t lines = 1, lineno = 0, pos = 0;
	bool seen_uid = false, seen_gid = false, seen_groups = false, seen_sig = false;
	const char *why = NULL;
	char *v = NULL;

	memset(im, 0, sizeof(*im));
	im->stop_signal = SIGTERM;
	if (len > ENTRY_MAX) {
		snprintf(err, errlen, "larger than %d bytes", ENTRY_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\n')
			lines++;
		else if (c == ' ')
			continue;
		else if (c < 0x21 || c > 0x7e || c == ',') {
			snprintf(err, errlen, "byte 0x%02x at offset %zu is not allowed", c, i);
			return -1;
		}
	}
	im->argv = calloc(lines + 1, sizeof(char *));
	im->env = calloc(lines + 3, sizeof(char *));
	if (!im->argv || !im->env) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	while (pos < len) {
		const char *line = buf + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		const char *sp, *val;
		size_t klen, vlen;

		pos += llen + (nl ? 1 : 0);
		lineno++;
		sp = memchr(line, ' ', llen);
		if (!sp) {
			snprintf(err, errlen, "line %zu: no space between key and value", lineno);
			goto fail;
		}
		klen = (size_t)(sp - line);
		val = sp + 1;
		vlen = llen - klen - 1;
		if (klen == 0 || klen > 64) {
			snprintf(err, errlen, "line %zu: bad key", lineno);
			goto fail;
		}
		for (size_t i = 0; i < klen; i++)
			if (!((line[i] >= 'a' && line[i] <= 'z') || (line[i] >= '0' && line[i] <= '9') || line[i] == '-')) {
				snprintf(err, errlen, "line %zu: bad key", lineno);
				goto fail;
			}
		if (memchr(val, ' ', vlen)) {
			snprintf(err, errlen, "line %zu: unencoded space in the value", lineno);
			goto fail;
		}
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
		if (lineno == 1) {
			if (!KEY("vmd-image")) {
				snprintf(err, errlen, "the first line is not \"vmd-image 1\"");
				goto fail;
			}
			if (vlen != 1 || val[0] != '1') {
				snprintf(err, errlen, "unsupported version \"vmd-image %.*s\"", (int)(vlen > 16 ? 16 : vlen), val);
				goto fail;
			}
			continue;
		}
		bool known = KEY("argv") || KEY("env") || KEY("workdir") || KEY("uid") || KEY("gid") || KEY("groups") ||
			     KEY("stop-signal") || KEY("vmd-image");
		if (!known)
			continue; /* forward compatibility */
		v = decode(val, vlen, &why);
		if (!v) {
			snprintf(err, errlen, "line %zu: %s", lineno, why);
			goto fail;
		}
		if (KEY("vmd-image")) {
			snprintf(err, errlen, "line %zu: a second vmd-image line", lineno);
			goto fail;
		} else if (KEY("argv")) {
			if (im->n_argv == 0 && v[0] == '\0') {
				snprintf(err, errlen, "line %zu: empty argv[0]", lineno);
				goto fail;
			}
			im->argv[im->n_argv++] = v;
			v = NULL;
		} else if (KEY("env")) {
			char *eq = strchr(v, '=');
			if (!eq || eq == v) {
				snprintf(err, errlen, "line %zu: env is not NAME=value", lineno);
				goto fail;
			}
			im->env[im->n_env++] = v;
			v = NULL;
		} else if (KEY("workdir")) {
			if (im->workdir || v[0] != '/' || strlen(v) >= PATH_MAX) {
				snprintf(err, errlen, "line %zu: %s", lineno,
					 im->workdir ? "a second workdir" : "workdir is not an absolute path");
				goto fail;
			}
			im->workdir = v;
			v = NULL;
		} else if (KEY("uid") || KEY("gid")) {
			bool *seen = KEY("uid") ? &seen_uid : &seen_gid;
			uint32_t id;
			if (*seen || parse_id(v, &id) < 0) {
				snprintf(err, errlen, "line %zu: %s", lineno, *seen ? "a second uid or gid" : "bad id");
				goto fail;
			}
			*seen = true;
			if (KEY("uid"))
				im->uid = id;
			else
				im->gid = id;
		} else if (KEY("groups")) {
			if (seen_groups) {
				snprintf(err, errlen, "line %zu: a second groups line", lineno);
				goto fail;
			}
			seen_groups = true;
			if (v[0]) {
				size_t n = 1;
				for (char *p = v; *p; p++)
					n += *p == ',';
				if (n > GROUPS_MAX) {
					snprintf(err, errlen, "line %zu: more than %d groups", lineno, GROUPS_MAX);
					goto fail;
				}
				im->groups = calloc(n, sizeof(gid_t));
				if (!im->groups) {
					snprintf(err, errlen, "out of memory");
					goto fail;
				}
				char *save = NULL, *tok;
				size_t k = 0;
				/* strtok_r would skip empty fields: check them first. */
				if (v[0] == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,")) {
					snprintf(err, errlen, "line %zu: empty group", lineno);
					goto fail;
				}
				for (tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
					uint32_t id;
					if (parse_id(tok, &id) < 0) {
						snprintf(err, errlen, "line %zu: bad group id", lineno);
						goto fail;
					}
					im->groups[k++] = id;
				}
				im->n_groups = k;
			}
			free(v);
			v = NULL;
		} else if (KEY("stop-signal")) {
			uint32_t s;
			if (seen_sig || parse_id(v, &s) < 0 || s < 1 || s > 64) {
				snprintf(err, errlen, "line %zu: %s", lineno, seen_sig ? "a second stop-signal" : "bad stop-signal");
				goto fail;
			}
			seen_sig = true;
			im->stop_signal = (int)s;
		}
#undef KEY
		free(v);
		v = NULL;
	}
	if (lineno == 0) {
		snprintf(err, errlen, "empty; the first line must be \"vmd-image 1\"");
		goto fail;
	}
	if (im->n_argv == 0) {
		snprintf(err, errlen, "no argv line: nothing to run");
		goto fail;
	}
	if (!im->workdir && !(im->workdir = strdup("/"))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return 0;
fail:
	free(v);
	image_free(im);
	return -1;
}

/* Reads at most max bytes (more is an error: -EFBIG). */
static int read_all(const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	size_t len = 0;
	char *buf;

	if (fd < 0)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			close(fd);
			free(buf);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			close(fd);
			free(buf);
			return -EFBIG;
		}
	}
	close(fd);
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int image_load(const char *path, struct image *im, char **raw, size_t *raw_len)
{
	char err[256];
	char *buf = NULL;
	size_t len = 0;
	int r = read_all(path, ENTRY_MAX, &buf, &len);

	if (r == -EFBIG) {
		say("%s: larger than %d bytes", path, ENTRY_MAX);
		return -1;
	}
	if (r < 0) {
		say("cannot read %s: %s", path, strerror(-r));
		return -1;
	}
	if (image_parse(buf, len, im, err, sizeof(err)) < 0) {
		say("malformed image entry %s: %s", path, err);
		free(buf);
		return -1;
	}
	if (raw) {
		*raw = buf;
		*raw_len = len;
	} else
		free(buf);
	return 0;
}

/* Docker's defaults for what the image's env lacks: PATH, and HOME from the
 * image's own passwd (else /). */
static void image_complete_env(struct image *im, const char *root)
{
	bool path = false, home = false;

	for (size_t i = 0; i < im->n_env; i++) {
		path |= strncmp(im->env[i], "PATH=", 5) == 0;
		home |= strncmp(im->env[i], "HOME=", 5) == 0;
	}
	if (!path)
		im->env[im->n_env++] = strdup(DEFAULT_PATH);
	if (!home) {
		char pw[PATH_MAX], line[1024], *h = NULL;
		FILE *f;

		snprintf(pw, sizeof(pw), "%s/etc/passwd", root);
		f = fopen(pw, "re");
		while (f && fgets(line, sizeof(line), f)) {
			/* name:pw:uid:gid:gecos:home:shell */
			char *fld[7] = { 0 };
			int n = 0;
			line[strcspn(line, "\n")] = '\0';
			for (char *c = line; n < 7; n++) {
				fld[n] = c;
				c = strchr(c, ':');
				if (!c)
					break;
				*c++ = '\0';
			}
			uint32_t id;
			if (n >= 5 && fld[2] && fld[5] && parse_id(fld[2], &id) == 0 && id == im->uid && fld[5][0] == '/') {
				h = fld[5];
				break;
			}
		}
		char *e = NULL;
		if (asprintf(&e, "HOME=%s", h ? h : "/") >= 0)
			im->env[im->n_env++] = e;
		if (f)
			fclose(f);
	}
	im->env[im->n_env] = NULL;
}

/* What every process PID 1 starts gets, as from any other init: no
 * blocked signal and every disposition at its default. A caught signal is
 * reset by exec anyway, but an ignored one stays ignored (PID 1 ignores
 * SIGPIPE), and a program that finds SIGPIPE ignored sees EPIPE instead of
 * dying: `yes | head -n1` would not end the way it does under docker. */
static void signals_default(void)
{
	struct sigaction sa;
	sigset_t none;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	/* SIGKILL and SIGSTOP cannot be changed; libc keeps a few real-time
	 * signals for itself and refuses them (EINVAL): never ignored here. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* ---- --enter and --parse ------------------------------------------------- */

static int enter(char **cmd)
{
	struct image im;

	if (image_load(access(SAVED_ENTRY, F_OK) == 0 ? SAVED_ENTRY : FW_CFG_ENTRY, &im, NULL, NULL) < 0)
		return 127;
	if (chroot(SYSROOT) < 0) {
		say("cannot chroot into %s: %m", SYSROOT);
		return 127;
	}
	if (chdir(im.workdir) < 0 && chdir("/") < 0) {
		say("cannot chdir to %s: %m", im.workdir);
		return 127;
	}
	image_complete_env(&im, "");
	environ = im.env;
	/* As docker exec: nothing ignored or blocked by whoever ran us
	 * (qemu-ga ignores SIGPIPE; its spawn resets that, today). */
	signals_default();
	execvp(cmd[0], cmd);
	int e = errno;
	say("cannot run %s: %s", cmd[0], strerror(e));
	return e == EACCES || e == ENOEXEC || e == EPERM ? 126 : 127;
}

static void print_value(const char *key, const char *v)
{
	printf("%s ", key);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == ',' || *p == '\\')
			printf("\\x%02x", *p);
		else
			putchar(*p);
	putchar('\n');
}

static int parse_only(const char *path)
{
	struct image im;

	if (image_load(path, &im, NULL, NULL) < 0)
		return 1;
	for (size_t i = 0; i < im.n_argv; i++)
		print_value("argv", im.argv[i]);
	for (size_t i = 0; i < im.n_env; i++)
		print_value("env", im.env[i]);
	print_value("workdir", im.workdir);
	printf("uid %u\ngid %u\ngroups", (unsigned)im.uid, (unsigned)im.gid);
	for (size_t i = 0; i < im.n_groups; i++)
		printf("%s%u", i ? "," : " ", (unsigned)im.groups[i]);
	printf("\nstop-signal %d\n", im.stop_signal);
	image_free(&im);
	return 0;
}

/* ---- PID 1 ---------------------------------------------------------------- */

static sigset_t handled;
static int notify_fd = -1;
static struct image image;

static struct child {
	const char *what;
	pid_t pid;
	long started; /* ms */
} agent = { "qemu-ga", 0, 0 }, acpid = { "acpid", 0, 0 };

static char agent_port[64], notify_port[64];
static char guest_linux[PATH_MAX], guest_qemuga[PATH_MAX], guest_nettools[PATH_MAX];

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void child_reset(void)
{
	signals_default();
}

static char *const helper_env[] = { (char *)"PATH=/bin", (char *)"HOME=/", NULL };

static pid_t spawn(char *const argv[], bool own_session)
{
	pid_t pid = fork();

	if (pid < 0) {
		say("cannot fork for %s: %m", argv[0]);
		return -1;
	}
	if (pid == 0) {
		child_reset();
		if (own_session)
			setsid();
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0 && null != STDIN_FILENO) {
			dup2(null, STDIN_FILENO);
			close(null);
		}
		execve(argv[0], argv, helper_env);
		say("cannot run %s: %m", argv[0]);
		_exit(127);
	}
	return pid;
}

/* Runs a helper to its end; its status, or -1. Other children that end
 * meanwhile are reaped later by the main loop (waitpid on this pid only). */
static int run(char *const argv[])
{
	pid_t pid = spawn(argv, false);
	int st;

	if (pid < 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int write_port(const char *text, long timeout_ms)
{
	size_t len = strlen(text), off = 0;
	long deadline = now_ms() + timeout_ms;

	if (notify_fd < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(notify_fd, text + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		/* Nobody on the host end yet: the port blocks until someone is. */
		long left = deadline - now_ms();
		if (left <= 0)
			return -1;
		struct pollfd p = { notify_fd, POLLOUT, 0 };
		poll(&p, 1, left > 100 ? 100 : (int)left);
	}
	return 0;
}

static void reap_all(long timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	struct timespec ts = { 0, 50 * 1000000L };
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	for (;;) {
		pid_t pid;
		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
			;
		if (pid < 0 && errno == ECHILD)
			return;
		if (now_ms() >= deadline)
			return;
		sigtimedwait(&chld, NULL, &ts);
	}
}

/* Unmounts every mount at or under prefix, the last mounted first, in
 * passes until nothing more goes; what stays busy is remounted read-only. */
static void unmount_under(const char *prefix)
{
	size_t plen = strlen(prefix);

	for (int pass = 0; pass < 4; pass++) {
		char *mps[512];
		size_t n = 0;
		char line[4096];
		bool progress = false;
		FILE *f = fopen("/proc/self/mountinfo", "re");

		if (!f)
			return;
		while (n < 512 && fgets(line, sizeof(line), f)) {
			char *fld = line, *mp;
			for (int i = 0; i < 4 && fld; i++) {
				fld = strchr(fld, ' ');
				if (fld)
					fld++;
			}
			if (!fld)
				continue;
			mp = fld;
			fld = strchr(mp, ' ');
			if (fld)
				*fld = '\0';
			/* mountinfo escapes ' ', '\t', '\n', '\\' as \ooo. */
			char *o = mp;
			for (char *p = mp; *p; p++) {
				if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
					*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
					p += 3;
				} else
					*o++ = *p;
			}
			*o = '\0';
			if (strncmp(mp, prefix, plen) == 0 && (mp[plen] == '\0' || mp[plen] == '/'))
				mps[n++] = strdup(mp);
		}
		fclose(f);
		if (n == 0)
			return;
		for (size_t i = n; i-- > 0;) {
			if (mps[i] && umount2(mps[i], 0) == 0)
				progress = true;
			else if (mps[i] && pass == 3) {
				if (mount(NULL, mps[i], NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0 && errno != EINVAL)
					say("cannot unmount or remount read-only %s: %m", mps[i]);
			}
			free(mps[i]);
		}
		if (!progress && pass < 3) {
			pass = 2; /* straight to the read-only pass */
		}
	}
}

/* The end: stop everything, unmount, report, power off. status < 0: the
 * boot failed before the entrypoint ran, so no EXIT_STATUS. */
static __attribute__((noreturn)) void finish(int status)
{
	/* PID 1 is immune to signals it does not handle; everyone else: */
	kill(-1, SIGTERM);
	kill(-1, SIGCONT);
	reap_all(2000);
	kill(-1, SIGKILL);
	reap_all(5000);
	sync();
	unmount_under(SYSROOT);
	unmount_under("/run/vmd");
	sync();
	if (status >= 0) {
		char text[32];
		snprintf(text, sizeof(text), "EXIT_STATUS=%d\n", status);
		if (write_port(text, 10000) < 0)
			say("cannot write EXIT_STATUS=%d to the notify port", status);
		/* A non-blocking write returns once the bytes are queued; give
		 * QEMU (an I/O thread under KVM) a moment to take them before
		 * the machine is gone. */
		if (notify_fd >= 0)
			msleep(50);
	}
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static __attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	say("%s; powering off", buf);
	finish(-1);
}

static void mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return;
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(tmp, mode);
			*p = '/';
		}
	mkdir(tmp, mode);
}

static void mount_or_fail(const char *src, const char *target, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, target, type, flags, data) < 0)
		fail("cannot mount %s (%s) at %s: %m", src, type, target);
}

/* A mount point in the image's root: made if missing, and it must be a
 * real directory. A symlink there (the image is outside input) would make
 * PID 1 mount over a path of its own root. */
static void sysroot_dir(const char *path, mode_t mode)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno != ENOENT || mkdir(path, mode) < 0)
			fail("cannot create %s: %m", path);
		return;
	}
	if (!S_ISDIR(st.st_mode))
		fail("%s in the image is not a directory", path + strlen(SYSROOT));
}

static void load_guest_paths(void)
{
	FILE *f = fopen(GUEST_PATHS, "re");
	char line[PATH_MAX + 32];

	if (!f)
		fail("cannot read %s: %m", GUEST_PATHS);
	while (fgets(line, sizeof(line), f)) {
		char *v = strchr(line, '=');
		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (strcmp(line, "linux") == 0)
			snprintf(guest_linux, sizeof(guest_linux), "%s", v);
		else if (strcmp(line, "qemuga") == 0)
			snprintf(guest_qemuga, sizeof(guest_qemuga), "%s", v);
		else if (strcmp(line, "nettools") == 0)
			snprintf(guest_nettools, sizeof(guest_nettools), "%s", v);
	}
	fclose(f);
	if (!guest_linux[0] || !guest_qemuga[0] || !guest_nettools[0])
		fail("%s lacks linux=, qemuga= or nettools=", GUEST_PATHS);
}

/* The virtio-serial ports by name (no udev here). Their names come from the
 * host after the device is up, so wait for them: 5 s at most. */
static void find_ports(void)
{
	for (int i = 0; i < 100; i++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *de;

		while (d && (de = readdir(d))) {
			char p[512], name[128] = "";
			ssize_t n;
			int fd;

			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name", de->d_name);
			fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			n = read(fd, name, sizeof(name) - 1);
			close(fd);
			if (n <= 0)
				continue;
			name[n] = '\0';
			name[strcspn(name, "\n")] = '\0';
			if (strcmp(name, "org.qemu.guest_agent.0") == 0)
				snprintf(agent_port, sizeof(agent_port), "/dev/%.50s", de->d_name);
			else if (strcmp(name, "io.vmd.notify") == 0)
				snprintf(notify_port, sizeof(notify_port), "/dev/%.50s", de->d_name);
		}
		if (d)
			closedir(d);
		if (agent_port[0] && notify_port[0])
			return;
		msleep(50);
	}
}

static void start(struct child *c)
{
	char lib[PATH_MAX + 8], loader[PATH_MAX + 32], bin[PATH_MAX + 16];

	c->started = now_ms();
	if (c == &agent) {
		snprintf(lib, sizeof(lib), "%s/lib", guest_qemuga);
		snprintf(loader, sizeof(loader), "%s/lib/ld-linux-x86-64.so.2", guest_qemuga);
		snprintf(bin, sizeof(bin), "%s/bin/qemu-ga", guest_qemuga);
		char *argv[] = { loader, (char *)"--library-path", lib, bin, (char *)"-m", (char *)"virtio-serial",
				 (char *)"-p", agent_port, (char *)"-t", (char *)"/run", NULL };
		c->pid = spawn(argv, true);
	} else {
		char *argv[] = { (char *)"/bin/acpid", (char *)"-f", (char *)"-c", (char *)"/etc/acpi", (char *)"-l",
				 (char *)"/run/acpid.log", NULL };
		c->pid = spawn(argv, true);
	}
	if (c->pid < 0)
		c->pid = 0;
}

/* qemu-ga holds its port once one of its fds is the port's node. */
static bool holds(pid_t pid, const char *node)
{
	char dir[64];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	while (d && !found && (de = readdir(d))) {
		char p[320], t[128];
		ssize_t n;
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		n = readlink(p, t, sizeof(t) - 1);
		if (n > 0) {
			t[n] = '\0';
			found = strcmp(t, node) == 0;
		}
	}
	if (d)
		closedir(d);
	return found;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	size_t len = strlen(text);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		fail("cannot write %s: %m", path);
	close(fd);
}

static bool acpid_ready;

/* button and evdev, then acpid: from the initrd's modules (early), or from
 * the store's (the second call, once /lib/modules is the store's). */
static void start_acpid(void)
{
	char *quiet[] = { (char *)"/bin/modprobe", (char *)"-q", (char *)"-a", (char *)"button", (char *)"evdev", NULL };
	char *loud[] = { (char *)"/bin/modprobe", (char *)"-a", (char *)"button", (char *)"evdev", NULL };
	bool early = access("/lib/modules.initrd", F_OK) < 0;

	if (run(early ? quiet : loud) != 0) {
		if (!early)
			say("cannot load button and evdev: no ACPI power button");
		return;
	}
	mkdir_p("/etc/acpi/PWRF", 0755);
	write_file("/etc/acpi/PWRF/00000080", "#!/bin/sh\nexec kill -TERM 1\n", 0755);
	start(&acpid);
	acpid_ready = true;
}

static void setup(void)
{
	char *raw = NULL, *modules_dir = NULL;
	size_t raw_len = 0;

	mkdir_p("/proc", 0755);
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	/* The kernel opened /dev/console for us only if the initrd had one. */
	if (fcntl(STDERR_FILENO, F_GETFD) < 0 || fcntl(STDOUT_FILENO, F_GETFD) < 0) {
		int fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			if (fd > STDERR_FILENO)
				close(fd);
		}
	}
	if (mount("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
		fail("cannot mount /run: %m");

	/* ext4 needs crc32c for metadata checksums: load it up front rather
	 * than through the kernel's request_module(); not fatal, since newer
	 * kernels name (or build in) that driver differently. */
	char *crc[] = { (char *)"/bin/modprobe", (char *)"-q", (char *)"crc32c_generic", NULL };
	char *mods[] = { (char *)"/bin/modprobe", (char *)"-a", (char *)"virtio_pci", (char *)"virtio_console",
			 (char *)"virtio_blk", (char *)"virtiofs", (char *)"overlay", (char *)"qemu_fw_cfg",
			 (char *)"ext4", NULL };
	(void)run(crc);
	if (run(mods) != 0)
		fail("cannot load the initrd's modules");
	/* The power button (QMP system_powerdown) asks PID 1 to stop, and a
	 * press nobody listens to is lost: acpid starts as soon as it can,
	 * from the initrd's button and evdev, else from the store's below.
	 * PID 1 keeps the request (SIGTERM, blocked) until it can act. */
	start_acpid();

	/* The entry, kept for --enter (qemu-ga's children); root only: the
	 * env may hold secrets. */
	for (int i = 0; access(FW_CFG_ENTRY, F_OK) < 0 && i < 40; i++)
		msleep(50);
	if (image_load(FW_CFG_ENTRY, &image, &raw, &raw_len) < 0)
		fail("no usable fw_cfg entry opt/io.vmd/image");
	mkdir_p("/run/vmd", 0700);
	write_file(SAVED_ENTRY, raw, 0600);
	free(raw);

	load_guest_paths();
	find_ports();
	if (notify_port[0])
		notify_fd = open(notify_port, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (notify_fd < 0)
		say("no io.vmd.notify port: nobody will hear READY or the exit status");

	/* The host store: qemu-ga, ip and wg, the rest of the modules. */
	mkdir_p("/nix/store", 0755);
	mount_or_fail("nix-store", "/nix/store", "virtiofs", MS_RDONLY | MS_NODEV, NULL);
	if (asprintf(&modules_dir, "%s/lib/modules", guest_linux) < 0)
		fail("out of memory");
	if (rename("/lib/modules", "/lib/modules.initrd") < 0 || symlink(modules_dir, "/lib/modules") < 0)
		fail("cannot link /lib/modules to %s: %m", modules_dir);
	free(modules_dir);
	if (!acpid_ready)
		start_acpid();

	/* qemu-ga runs outside the image root (vmd exec comes in through
	 * --enter). Started now, its start-up overlaps the rest; nothing can
	 * ask it anything before READY. */
	if (agent_port[0])
		start(&agent);
	else
		say("no org.qemu.guest_agent.0 port: no qemu-ga");

	/* The root: the image read-only under a fresh tmpfs. */
	mkdir_p("/run/vmd/image", 0755);
	mkdir_p("/run/vmd/rw", 0755);
	mount_or_fail(IMAGE_SHARE_TAG, "/run/vmd/image", "virtiofs", MS_RDONLY | MS_NODEV, NULL);
	mount_or_fail("rw", "/run/vmd/rw", "tmpfs", 0, "mode=0755");
	mkdir_p("/run/vmd/rw/upper", 0755);
	mkdir_p("/run/vmd/rw/work", 0755);
	mkdir_p(SYSROOT, 0755);
	mount_or_fail("overlay", SYSROOT, "overlay", 0,
		      "lowerdir=/run/vmd/image,upperdir=/run/vmd/rw/upper,workdir=/run/vmd/rw/work");

	sysroot_dir(SYSROOT "/proc", 0555);
	mount_or_fail("proc", SYSROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	sysroot_dir(SYSROOT "/sys", 0555);
	mount_or_fail("sysfs", SYSROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	sysroot_dir(SYSROOT "/dev", 0755);
	mount_or_fail("devtmpfs", SYSROOT "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mkdir_p(SYSROOT "/dev/pts", 0755);
	mount_or_fail("devpts", SYSROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		      "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mkdir_p(SYSROOT "/dev/shm", 01777);
	mount_or_fail("shm", SYSROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	sysroot_dir(SYSROOT "/run", 0755);
	mount_or_fail("run", SYSROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

	/* Keys, shares and disks at their targets: the script every vmd
	 * guest runs, told to refuse a symlink on the way (the image's own
	 * symlinks would resolve against this initrd's root). */
	char *mounts[] = { (char *)"/bin/sh", (char *)"/vmd-mounts.sh", (char *)SYSROOT, NULL };
	char *const env_ns[] = { (char *)"PATH=/bin", (char *)"VMD_MOUNTS_NO_SYMLINKS=1", NULL };
	{
		pid_t pid = fork();
		int st = 0;
		if (pid == 0) {
			child_reset();
			execve(mounts[0], mounts, env_ns);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail("cannot mount what systemd.mount-extra= asks for");
	}

	/* Hostname, ip= and wg0 (from the image root's /etc/wireguard, where
	 * vmd-mounts.sh put the key directory). */
	char *net[] = { (char *)"/bin/sh", (char *)"/vmd-net.sh", (char *)SYSROOT, guest_nettools, NULL };
	if (run(net) != 0)
		say("the network setup failed");
}

static pid_t start_entrypoint(void)
{
	int exec_pipe[2];
	pid_t pid;

	/* The child's end closes when its exec succeeds (O_CLOEXEC) or it
	 * exits: EOF on PID 1's end means the entrypoint's program runs.
	 * Both ends above 2, which the child replaces. */
	if (pipe2(exec_pipe, O_CLOEXEC) < 0)
		fail("cannot make a pipe for the entrypoint: %m");
	for (int i = 0; i < 2; i++)
		if (exec_pipe[i] <= STDERR_FILENO) {
			int fd = fcntl(exec_pipe[i], F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
			if (fd < 0)
				fail("cannot make a pipe for the entrypoint: %m");
			close(exec_pipe[i]);
			exec_pipe[i] = fd;
		}
	pid = fork();
	if (pid < 0)
		fail("cannot fork the entrypoint: %m");
	if (pid > 0) {
		char c;
		close(exec_pipe[1]);
		while (read(exec_pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		close(exec_pipe[0]);
		return pid;
	}

	close(exec_pipe[0]);
	child_reset();
	setsid();
	int null = open("/dev/null", O_RDONLY), con = open("/dev/console", O_WRONLY | O_NOCTTY);
	if (null < 0 || con < 0)
		_exit(127);
	dup2(null, STDIN_FILENO);
	dup2(con, STDOUT_FILENO);
	dup2(con, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
	if (con > STDERR_FILENO)
		close(con);
	/* Everything below resolves paths inside the image only. */
	if (chroot(SYSROOT) < 0 || chdir("/") < 0) {
		say("cannot chroot into %s: %m", SYSROOT);
		_exit(127);
	}
	/* Docker makes a missing WorkingDir; so does this, as root. */
	if (chdir(image.workdir) < 0) {
		if (errno == ENOENT)
			mkdir_p(image.workdir, 0755);
		if (chdir(image.workdir) < 0) {
			say("cannot chdir to %s: %m", image.workdir);
			_exit(127);
		}
	}
	image_complete_env(&image, "");
	if (setgroups(image.n_groups, image.groups) < 0 || setgid(image.gid) < 0 || setuid(image.uid) < 0) {
		say("cannot become uid %u gid %u: %m", (unsigned)image.uid, (unsigned)image.gid);
		_exit(127);
	}
	/* Never run the image as root by mistake. */
	if (getuid() != image.uid || geteuid() != image.uid || getgid() != image.gid || getegid() != image.gid ||
	    (image.uid != 0 && setuid(0) == 0)) {
		say("the switch to uid %u gid %u did not take", (unsigned)image.uid, (unsigned)image.gid);
		_exit(127);
	}
	environ = image.env;
	execvp(image.argv[0], image.argv);
	int e = errno;
	say("cannot run %s: %s", image.argv[0], strerror(e));
	_exit(e == EACCES || e == ENOEXEC || e == EPERM ? 126 : 127);
}

static int pid1(void)
{
	pid_t entry;
	int stops = 0;

	umask(022);
	/* Ctrl-Alt-Del becomes SIGINT to PID 1, not an instant reboot. */
	reboot(RB_DISABLE_CAD);
	sigemptyset(&handled);
	sigaddset(&handled, SIGCHLD);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGHUP);
	sigaddset(&handled, SIGPWR);
	sigprocmask(SIG_BLOCK, &handled, NULL);
	/* A closed host end must not kill PID 1. */
	signal(SIGPIPE, SIG_IGN);

	setup();

	/* READY=1 only once qemu-ga holds its port, so the host can exec
	 * right away. */
	for (int i = 0; agent.pid > 0 && i < 200 && !holds(agent.pid, agent_port); i++)
		msleep(25);

	/* A stop that came during the boot (blocked, so kept): the
	 * entrypoint never starts, and the VM ends as a container stopped
	 * by SIGTERM. */
	sigset_t stop;
	struct timespec zero = { 0, 0 };
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGPWR);
	if (sigtimedwait(&stop, NULL, &zero) > 0) {
		say("stopped before the entrypoint started");
		finish(128 + SIGTERM);
	}

	/* Returns once the entrypoint exec'd (or failed to): a stop from
	 * now on stays pending until the loop below sends it, so it never
	 * reaches the child before its exec, where a stop signal whose
	 * default is to be ignored (SIGWINCH, say) would be lost. */
	entry = start_entrypoint();
	if (write_port("READY=1\n", 10000) < 0 && notify_fd >= 0)
		say("cannot write READY=1 to the notify port");

	for (;;) {
		struct timespec ts = { 1, 0 };
		siginfo_t si;
		int sig = sigtimedwait(&handled, &si, &ts);
		pid_t pid;
		int st;

		if (sig == SIGTERM || sig == SIGINT || sig == SIGPWR) {
			/* The first stop is the image's stop signal; a second
			 * one does not wait for it. */
			kill(entry, stops++ == 0 ? image.stop_signal : SIGKILL);
		}
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			if (pid == entry)
				finish(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			if (pid == agent.pid)
				agent.pid = 0;
			if (pid == acpid.pid)
				acpid.pid = 0;
		}
		/* Respawned, at most once a second each. */
		if (agent_port[0] && agent.pid == 0 && now_ms() - agent.started >= 1000)
			start(&agent);
		if (acpid_ready && acpid.pid == 0 && now_ms() - acpid.started >= 1000)
			start(&acpid);
	}
}

int main(int argc, char **argv)
{
	if (getpid() == 1)
		return pid1();
	if (argc >= 4 && strcmp(argv[1], "--enter") == 0 && strcmp(argv[2], "--") == 0)
		return enter(argv + 3);
	if (argc == 3 && strcmp(argv[1], "--parse") == 0)
		return parse_only(argv[2]);
	fprintf(stderr, "usage: %s --enter -- CMD [ARG...]\n       %s --parse FILE\n", argv[0], argv[0]);
	return 2;
}
