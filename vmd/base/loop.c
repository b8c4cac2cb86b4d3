/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "log.h"
#include "loop.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum source_type { SOURCE_IO, SOURCE_TIMER, SOURCE_CHILD, SOURCE_SIGNAL };

struct loop_source {
	struct loop *loop;
	enum source_type type;
	int fd; /* epoll-registered fd; owned for SOURCE_SIGNAL only */
	bool registered, dead;
	void *userdata;
	union {
		loop_io_cb io;
		loop_timer_cb timer;
		loop_child_cb child;
		loop_signal_cb signal;
	} cb;
	usec_t when; /* SOURCE_TIMER */
	sigset_t mask; /* SOURCE_SIGNAL */
	struct loop_source *next; /* in timers or in the dead list */
};

struct loop {
	int epfd;
	int timerfd;
	struct loop_source timer_anchor; /* epoll data for the timerfd */
	struct loop_source *timers;      /* unsorted; few */
	struct loop_source *dead;
	/* The timerfd is re-armed once per iteration, not on every change:
	 * adding or moving thousands of timers costs no syscalls. */
	bool timers_dirty;
	bool exit;
	int exit_code;
};

int loop_new(struct loop **ret)
{
	_cleanup_(loop_freep) struct loop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (l->epfd < 0 || l->timerfd < 0)
		return -errno;
	l->timer_anchor.loop = l;
	l->timer_anchor.fd = l->timerfd;
	ev.data.ptr = &l->timer_anchor;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->timerfd, &ev) < 0)
		return -errno;
	*ret = TAKE_PTR(l);
	return 0;
}

static void reap_dead(struct loop *l)
{
	while (l->dead) {
		struct loop_source *s = l->dead;

		l->dead = s->next;
		free(s);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	reap_dead(l);
	safe_close(l->epfd);
	safe_close(l->timerfd);
	free(l);
}

static struct loop_source *source_new(struct loop *l, enum source_type type, void *userdata)
{
	struct loop_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->loop = l;
	s->type = type;
	s->fd = -EBADF;
	s->userdata = userdata;
	return s;
}

static int source_register(struct loop_source *s, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	if (epoll_ctl(s->loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	s->fd = fd;
	s->registered = true;
	return 0;
}

static void source_unregister(struct loop_source *s)
{
	if (s->registered)
		epoll_ctl(s->loop->epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->registered = false;
}

int loop_add_io(struct loop *l, int fd, uint32_t events, loop_io_cb cb, void *userdata,
		struct loop_source **ret)
{
	_cleanup_free_ struct loop_source *s = source_new(l, SOURCE_IO, userdata);
	int r;

	if (!s)
		return -ENOMEM;
	s->cb.io = cb;
	r = source_register(s, fd, events);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

int loop_io_set_events(struct loop_source *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	return epoll_ctl(s->loop->epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0 ? -errno : 0;
}

static int timers_rearm(struct loop *l)
{
	usec_t next = 0;
	struct itimerspec its = {};

	for (struct loop_source *t = l->timers; t; t = t->next)
		if (t->when && (!next || t->when < next))
			next = t->when;
	if (next) {
		its.it_value.tv_sec = (time_t)(next / USEC_PER_SEC);
		its.it_value.tv_nsec = (long)(next % USEC_PER_SEC) * 1000;
		/* 0 would disarm; an overdue timer fires right away. */
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	return timerfd_settime(l->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0 ? -errno : 0;
}

int loop_add_timer(struct loop *l, usec_t when, loop_timer_cb cb, void *userdata,
		   struct loop_source **ret)
{
	struct loop_source *s = source_new(l, SOURCE_TIMER, userdata);

	if (!s)
		return -ENOMEM;
	s->cb.timer = cb;
	s->when = when;
	s->next = l->timers;
	l->timers = s;
	*ret = s;
	l->timers_dirty = true;
	return 0;
}

int loop_timer_set(struct loop_source *s, usec_t when)
{
	if (!s)
		return 0;
	if (s->when != when) {
		s->when = when;
		s->loop->timers_dirty = true;
	}
	return 0;
}

int loop_add_child(struct loop *l, int pidfd, loop_child_cb cb, void *userdata,
		   struct loop_source **ret)
{
	_cleanup_free_ struct loop_source *s = source_new(l, SOURCE_CHILD, userdata);
	int r;

	if (!s)
		return -ENOMEM;
	s->cb.child = cb;
	r = source_register(s, pidfd, EPOLLIN);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

int loop_add_signals(struct loop *l, const int *sigs, size_t n, loop_signal_cb cb, void *userdata,
		     struct loop_source **ret)
{
	_cleanup_free_ struct loop_source *s = source_new(l, SOURCE_SIGNAL, userdata);
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!s)
		return -ENOMEM;
	s->cb.signal = cb;
	sigemptyset(&s->mask);
	for (size_t i = 0; i < n; i++)
		sigaddset(&s->mask, sigs[i]);
	if (sigprocmask(SIG_BLOCK, &s->mask, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &s->mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	r = source_register(s, fd, EPOLLIN);
	if (r < 0)
		return r;
	s->fd = TAKE_FD(fd);
	*ret = TAKE_PTR(s);
	return 0;
}

void loop_source_free(struct loop_source *s)
{
	struct loop *l;

	if (!s || s->dead)
		return;
	l = s->loop;
	source_unregister(s);
	/* The signals stay blocked: unblocking would let one that is still
	 * pending kill the process with its default action. */
	if (s->type == SOURCE_SIGNAL)
		s->fd = safe_close(s->fd);
	if (s->type == SOURCE_TIMER) {
		for (struct loop_source **p = &l->timers; *p; p = &(*p)->next)
			if (*p == s) {
				*p = s->next;
				break;
			}
		l->timers_dirty = true;
	}
	/* Events for s may still be pending in this iteration's batch. */
	s->dead = true;
	s->next = l->dead;
	l->dead = s;
}

static void dispatch_timers(struct loop *l)
{
	uint64_t expirations;
	usec_t now = now_usec();
	bool again = true;

	(void)!read(l->timerfd, &expirations, sizeof(expirations));
	/* A callback may add or free timers, so restart the scan after each. */
	while (again) {
		again = false;
		for (struct loop_source *t = l->timers; t; t = t->next)
			if (t->when && t->when <= now) {
				t->when = 0;
				t->cb.timer(t, t->userdata);
				again = true;
				break;
			}
	}
	l->timers_dirty = true;
}

static void dispatch(struct loop_source *s, uint32_t revents)
{
	switch (s->type) {
	case SOURCE_IO:
		s->cb.io(s, s->fd, revents, s->userdata);
		break;
	case SOURCE_CHILD: {
		siginfo_t si = {};
		int r = waitid(P_PIDFD, (id_t)s->fd, &si, WEXITED | WNOHANG);

		if (r == 0 && si.si_pid == 0)
			return; /* spurious */
		source_unregister(s);
		s->cb.child(s, r == 0 ? &si : NULL, s->userdata);
		break;
	}
	case SOURCE_SIGNAL: {
		struct signalfd_siginfo si;

		while (!s->dead && read(s->fd, &si, sizeof(si)) == sizeof(si))
			s->cb.signal(s, &si, s->userdata);
		break;
	}
	case SOURCE_TIMER:
		break;
	}
}

int loop_iterate(struct loop *l, usec_t timeout)
{
	struct epoll_event evs[32];
	int n;

	if (l->timers_dirty) {
		int r = timers_rearm(l);

		if (r < 0)
			return r;
		l->timers_dirty = false;
	}
	n = epoll_wait(l->epfd, evs, ELEMENTSOF(evs),
		       timeout == (usec_t)-1 ? -1 : (int)((timeout + 999) / 1000));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct loop_source *s = evs[i].data.ptr;

		if (s == &l->timer_anchor)
			dispatch_timers(l);
		else if (!s->dead)
			dispatch(s, evs[i].events);
	}
	reap_dead(l);
	return n;
}

int loop_run(struct loop *l)
{
	while (!l->exit) {
		int r = loop_iterate(l, (usec_t)-1);

		if (r < 0)
			return log_error_errno(r, "event loop: %m");
	}
	return l->exit_code;
}

void loop_exit(struct loop *l, int code)
{
	l->exit = true;
	l->exit_code = code;
}
