/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Process identity, the part of child.h that vmstate.h needs. It is a
 * header of its own only because vm.c still has static child_signal(),
 * child_forget() and child_kill_wait() of its own, whose names clash with
 * child.h's: once vm.c uses struct child, this folds back into child.h and
 * vmstate.h includes that. Include child.h, not this. */

#include <stdint.h>
#include <sys/types.h>

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
