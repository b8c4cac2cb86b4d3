/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A small single-threaded event loop on epoll: fds, timers (one timerfd),
 * child processes (pidfd) and signals (signalfd). Sources may be freed from
 * inside any callback, including their own. */

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>

#include "util.h"

struct loop;
struct loop_source;

typedef void (*loop_io_cb)(struct loop_source *s, int fd, uint32_t revents, void *userdata);
typedef void (*loop_timer_cb)(struct loop_source *s, void *userdata);
/* si is NULL when the process was not our child (adopted after a restart),
 * so its exit status is unknown. The source stops firing after this. */
typedef void (*loop_child_cb)(struct loop_source *s, const siginfo_t *si, void *userdata);
typedef void (*loop_signal_cb)(struct loop_source *s, const struct signalfd_siginfo *si, void *userdata);

int loop_new(struct loop **ret);
void loop_free(struct loop *l);
static inline void loop_freep(struct loop **l)
{
	if (*l)
		loop_free(*l);
	*l = NULL;
}

int loop_add_io(struct loop *l, int fd, uint32_t events, loop_io_cb cb, void *userdata,
		struct loop_source **ret);
int loop_io_set_events(struct loop_source *s, uint32_t events);

/* when: absolute CLOCK_MONOTONIC time in usec; 0 disarms. */
int loop_add_timer(struct loop *l, usec_t when, loop_timer_cb cb, void *userdata,
		   struct loop_source **ret);
int loop_timer_set(struct loop_source *s, usec_t when);

/* The pidfd stays owned by the caller. */
int loop_add_child(struct loop *l, int pidfd, loop_child_cb cb, void *userdata,
		   struct loop_source **ret);

/* Blocks the signals and delivers them through a signalfd. They stay
 * blocked after the source is freed. */
int loop_add_signals(struct loop *l, const int *sigs, size_t n, loop_signal_cb cb, void *userdata,
		     struct loop_source **ret);

void loop_source_free(struct loop_source *s);
static inline void loop_source_freep(struct loop_source **s)
{
	if (*s)
		loop_source_free(*s);
	*s = NULL;
}

/* Runs until loop_exit(); returns the code passed to it. */
int loop_run(struct loop *l);
void loop_exit(struct loop *l, int code);
/* Runs one iteration, waiting at most timeout (for tests). */
int loop_iterate(struct loop *l, usec_t timeout);
