/* SPDX-License-Identifier: LGPL-2.1-or-later */
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

int child_spawn(struct child *c, struct loop *l, const struct spawn_opts *o, child_exit_cb cb, void *userdata)
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
