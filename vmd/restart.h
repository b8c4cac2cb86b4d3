/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's restart policy, as pure functions of a VM's history and the
 * time (manager.c applies them; tests call them with a fake clock):
 * - which exits restart a VM (its definition's restart policy);
 * - the delay: restart_delay_min_ms, doubling up to restart_delay_max_ms,
 *   and back to the minimum after restart_reset_s of READY uptime;
 * - the start limit: start_limit_burst starts within
 *   start_limit_interval_s, and the next one is refused (the VM is
 *   "failed" until "vmd start" or a changed definition). */

#include "vm.h"

struct restart_history {
	usec_t delay;   /* the next automatic restart's delay */
	usec_t *starts; /* recent start times, for the start limit */
	size_t n_starts;
};

/* Forgets the past: the shortest delay, no starts counted. */
void restart_reset(struct restart_history *h, const struct host_config *host);
void restart_history_done(struct restart_history *h);
/* Whether the definition's policy restarts the VM after this exit. */
bool restart_wanted(int policy, enum vm_exit_reason reason);
/* Drops starts older than the window; false if the limit is reached. */
bool restart_start_allowed(struct restart_history *h, const struct host_config *host, usec_t now);
/* Counts a start at now. */
int restart_note_start(struct restart_history *h, usec_t now);
/* The delay before the next automatic restart, and the one after it
 * doubled. ready_at: when the last boot became ready (0: it never did). */
usec_t restart_next_delay(struct restart_history *h, const struct host_config *host, usec_t ready_at, usec_t now);
