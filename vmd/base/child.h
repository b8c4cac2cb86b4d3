/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A supervised child process: QEMU, a virtiofsd, wireguard-go. It is
 * started with spawn() or adopted by identity after a daemon restart,
 * watched through its pidfd on the loop, signalled only through that pidfd
 * (never a recycled pid), and either killed or left running (an upgrade). */

#include <signal.h>
#include <stdbool.h>

#include "loop.h"
#include "spawn.h"

/* Process identity: pid *and* start time, so a recycled pid is never taken for ours. */
struct proc_id {
	pid_t pid;
	uint64_t start_time; /* /proc/PID/stat field 22 */
};

/* Reads the identity of a running process; -ESRCH if there is none. */
int proc_id_get(pid_t pid, struct proc_id *ret);
/* Opens a pidfd for id, only if that pid is still the same process:
 * -ESRCH if it is gone or the pid now belongs to another process. */
int proc_id_open(const struct proc_id *id, int *ret_pidfd);
/* Signals the process named by id, only if it is still that process. */
int proc_id_signal(const struct proc_id *id, int sig);

struct child;
/* si is NULL when the status cannot be known (an adopted process is not our child). */
typedef void (*child_exit_cb)(struct child *c, const siginfo_t *si, void *userdata);

/* The loop refers to it by address while it is watched: do not move it. */
struct child {
	char *what;        /* "QEMU", "virtiofsd for nix-store": for messages; owned */
	pid_t pid;
	int pidfd;
	struct loop_source *src;
	bool running;
	child_exit_cb cb;
	void *userdata;
};

/* An empty child (pidfd -EBADF); what is copied (may be NULL). -ENOMEM. */
int child_init(struct child *c, const char *what);
/* Forgets the process (it runs on, as in an upgrade) and frees what. */
void child_done(struct child *c);
/* spawn() (vmd/spawn.h) with the options o, then watched on l: cb runs once
 * when it exits, after the child has been forgotten (running false).
 * -EBUSY if c already runs; on failure nothing is left running. */
int child_spawn(struct child *c, struct loop *l, const struct spawn_opts *o, child_exit_cb cb, void *userdata);
/* spawn() without watching: for a helper run to completion (child_wait). */
int child_start(struct child *c, const struct spawn_opts *o);
/* Synchronous, for a helper: waits up to timeout for it to exit, SIGKILL
 * after that, and reaps it. Its exit status (0..255), 128+signal,
 * -ETIMEDOUT or -errno; the child is forgotten either way. */
int child_wait(struct child *c, usec_t timeout);
/* Runs argv to completion with the given extra fds, collecting its
 * stdout+stderr (up to max bytes) into *ret_output (may be NULL). Returns
 * the exit status as child_wait() does. */
int child_run(char *const *argv, enum sandbox_profile profile, const struct spawn_fd *fds, size_t n_fds,
	      usec_t timeout, size_t max, char **ret_output);
/* Follows a process named by identity (adoption after a daemon restart):
 * -ESRCH if it is gone or its pid now belongs to another process. */
int child_adopt(struct child *c, struct loop *l, const struct proc_id *id, child_exit_cb cb, void *userdata);
/* Sends sig if it runs (pidfd_send_signal; never to a recycled pid). */
void child_signal(struct child *c, int sig);
/* Stops watching, closes the pidfd; the process runs on. */
void child_forget(struct child *c);
/* Synchronous: sig (SIGTERM or SIGKILL), wait up to grace, then SIGKILL and
 * reap (or, for an adopted process, wait on its pidfd). Only for teardown
 * paths that cannot wait for the loop (undoing a failed start, exit). */
void child_kill_wait(struct child *c, int sig, usec_t grace);
/* Its identity, for a state file. -ESRCH once it has exited, even if the
 * exit has not been handled yet. */
int child_identity(const struct child *c, struct proc_id *ret);

/* "exited with status 3", "was killed by signal 9 (Killed)", or "exited"
 * where si is NULL (not our child); into buf, which it returns. */
const char *child_describe_status(const siginfo_t *si, char *buf, size_t n);
