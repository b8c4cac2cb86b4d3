/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "child.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* How long a SIGKILLed process that is not our child gets to vanish: its
 * exit cannot be waited for, only seen on its pidfd. */
#define ADOPTED_KILL_WAIT_USEC (5 * USEC_PER_SEC)

int proc_id_get(pid_t pid, struct proc_id *ret)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/stat", (int)pid), *buf = NULL;
	unsigned long long start;
	const char *p;
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, 4096, &buf, NULL);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	/* The command name may contain spaces and ')': skip past the last. */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* Fields from 3 (state) on; start time is field 22. */
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	if (sscanf(p, " %llu", &start) != 1)
		return -EIO;
	ret->pid = pid;
	ret->start_time = start;
	return 0;
}

int proc_id_open(const struct proc_id *id, int *ret_pidfd)
{
	_cleanup_close_ int fd = -EBADF;
	struct proc_id now;
	int r;

	if (id->pid <= 1)
		return -ESRCH;
	fd = (int)syscall(SYS_pidfd_open, id->pid, 0);
	if (fd < 0)
		return -errno;
	/* Checked after the pidfd exists: if the pid was reused before, the
	 * start time differs; after, the pidfd still names the right one. */
	r = proc_id_get(id->pid, &now);
	if (r < 0)
		return r;
	if (now.start_time != id->start_time)
		return -ESRCH;
	*ret_pidfd = TAKE_FD(fd);
	return 0;
}

int proc_id_signal(const struct proc_id *id, int sig)
{
	_cleanup_close_ int pidfd = -EBADF;
	int r = proc_id_open(id, &pidfd);

	if (r < 0)
		return r;
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

int child_init(struct child *c, const char *what)
{
	*c = (struct child){ .pidfd = -EBADF };
	if (what) {
		c->what = strdup(what);
		if (!c->what)
			return -ENOMEM;
	}
	return 0;
}

void child_done(struct child *c)
{
	child_forget(c);
	free(c->what);
	c->what = NULL;
}

static void on_exit_trampoline(struct loop_source *s, const siginfo_t *si, void *userdata)
{
	struct child *c = userdata;

	(void)s;
	/* Forgotten first, so that cb may start it again or free it. */
	child_forget(c);
	if (c->cb)
		c->cb(c, si, c->userdata);
}

/* c holds a pidfd of a running process: watch it. */
static int watch(struct child *c, struct loop *l, child_exit_cb cb, void *userdata)
{
	c->running = true;
	c->cb = cb;
	c->userdata = userdata;
	return loop_add_child(l, c->pidfd, on_exit_trampoline, c, &c->src);
}

int child_start(struct child *c, const struct spawn_opts *o)
{
	pid_t pid;
	int pidfd, r;

	if (c->running)
		return -EBUSY;
	r = spawn(o, &pid, &pidfd);
	if (r < 0)
		return r;
	c->pid = pid;
	c->pidfd = pidfd;
	c->running = true;
	return 0;
}

int child_spawn(struct child *c, struct loop *l, const struct spawn_opts *o, child_exit_cb cb, void *userdata)
{
	int r = child_start(c, o);

	if (r < 0)
		return r;
	r = watch(c, l, cb, userdata);
	if (r < 0)
		child_kill_wait(c, SIGKILL, 0);
	return r;
}

int child_adopt(struct child *c, struct loop *l, const struct proc_id *id, child_exit_cb cb, void *userdata)
{
	int r;

	if (c->running)
		return -EBUSY;
	r = proc_id_open(id, &c->pidfd);
	if (r < 0)
		return r;
	c->pid = id->pid;
	r = watch(c, l, cb, userdata);
	if (r < 0)
		child_forget(c); /* not ours to kill */
	return r;
}

void child_signal(struct child *c, int sig)
{
	if (c->running && c->pidfd >= 0)
		(void)syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0);
}

void child_forget(struct child *c)
{
	loop_source_freep(&c->src);
	c->pidfd = safe_close(c->pidfd);
	c->running = false;
	c->pid = 0;
}

/* Whether the process exits within timeout (its pidfd turns readable). */
static bool pidfd_wait_exit(int pidfd, usec_t timeout)
{
	usec_t deadline = now_usec() + timeout;
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	for (;;) {
		usec_t now = now_usec();
		usec_t left = deadline > now ? (deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC : 0;
		int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);

		if (r > 0)
			return true;
		if ((r == 0 && left == 0) || (r < 0 && errno != EINTR))
			return false;
	}
}

void child_kill_wait(struct child *c, int sig, usec_t grace)
{
	siginfo_t si;
	int r;

	if (!c->running) {
		child_forget(c);
		return;
	}
	child_signal(c, sig);
	if (sig != SIGKILL && !pidfd_wait_exit(c->pidfd, grace))
		child_signal(c, SIGKILL);
	do
		r = waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED);
	while (r < 0 && errno == EINTR);
	/* An adopted process is not our child: only its pidfd tells. */
	if (r < 0 && errno == ECHILD)
		(void)pidfd_wait_exit(c->pidfd, ADOPTED_KILL_WAIT_USEC);
	child_forget(c);
}

int child_identity(const struct child *c, struct proc_id *ret)
{
	struct pollfd p = { .fd = c->pidfd, .events = POLLIN };
	struct proc_id id;
	int r;

	if (!c->running)
		return -ESRCH;
	r = proc_id_get(c->pid, &id);
	if (r < 0)
		return r;
	/* Still running after the read: then the pid was its own during it.
	 * One that exited may be reaped (by its parent, if adopted) and its
	 * pid given to another process. */
	r = poll(&p, 1, 0);
	if (r < 0)
		return -errno;
	if (r > 0)
		return -ESRCH;
	*ret = id;
	return 0;
}

const char *child_describe_status(const siginfo_t *si, char *buf, size_t n)
{
	if (!si)
		snprintf(buf, n, "exited");
	else if (si->si_code == CLD_EXITED)
		snprintf(buf, n, "exited with status %d", si->si_status);
	else
		snprintf(buf, n, "was killed by signal %d (%s)", si->si_status, strsignal(si->si_status));
	return buf;
}

static int status_of(const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		return si->si_status & 0xff;
	return 128 + si->si_status;
}

int child_wait(struct child *c, usec_t timeout)
{
	siginfo_t si = {};
	bool exited;
	int r;

	if (!c->running)
		return -ECHILD;
	exited = pidfd_wait_exit(c->pidfd, timeout);
	if (!exited)
		child_signal(c, SIGKILL);
	do
		r = waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED);
	while (r < 0 && errno == EINTR);
	r = r < 0 ? -errno : exited ? status_of(&si) : -ETIMEDOUT;
	child_forget(c);
	return r;
}

int child_run(char *const *argv, enum sandbox_profile profile, const struct spawn_fd *fds, size_t n_fds,
	      usec_t timeout, size_t max, char **ret_output)
{
	_cleanup_close_ int rd = -EBADF, wr = -EBADF;
	_cleanup_free_ char *out = NULL;
	usec_t deadline = now_usec() + timeout;
	struct child c = { .pidfd = -EBADF };
	size_t len = 0;
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	rd = p[0];
	wr = p[1];
	out = malloc(max + 1);
	if (!out)
		return -ENOMEM;

	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = n_fds,
		.stdin_fd = -1,
		.stdout_fd = wr,
		.stderr_fd = wr,
		.profile = profile,
		.die_with_parent = true,
	};
	r = child_start(&c, &o);
	if (r < 0)
		return r;
	wr = safe_close(wr);

	/* Drain the output until EOF so a chatty child cannot block on a
	 * full pipe; keep only the first max bytes. */
	for (;;) {
		struct pollfd pf = { .fd = rd, .events = POLLIN };
		usec_t now = now_usec();
		char buf[4096];
		ssize_t k;

		if (now >= deadline)
			break;
		r = poll(&pf, 1, (int)((deadline - now + 999) / 1000));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		k = read(rd, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (len < max) {
			size_t n = (size_t)k < max - len ? (size_t)k : max - len;
			memcpy(out + len, buf, n);
			len += n;
		}
	}
	out[len] = 0;
	r = child_wait(&c, deadline > now_usec() ? deadline - now_usec() : 0);
	if (ret_output)
		*ret_output = TAKE_PTR(out);
	return r;
}
