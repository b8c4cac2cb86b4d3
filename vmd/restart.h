/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's restart policy, as pure functions of a VM's history and the
 * time (manager.c applies them; tests call them with a fake clock):
 * - which exits restart a VM (its definition's restart policy);
 * - the delay: restart_delay_min_ms, doubling up to restart_delay_max_ms,
 *   and back to the minimum after restart_reset_s of READY uptime;
 * - the start limit: start_limit_burst starts within
 *   start_limit_interval_s, or start_limit_unready starts in a row that
 *   never became ready, however far apart (a boot can take ready_timeout_s,
 *   longer than the window), and the next one is refused (the VM is "failed" until
 *   "vmd start", "vmd restart" or a changed definition). */

#include "vm.h"

struct restart_history {
	usec_t delay;   /* the next automatic restart's delay */
	usec_t *starts; /* recent start times, for the start limit */
	size_t n_starts;
	uint32_t unready; /* starts in a row that have not become ready */
};

/* Forgets the past: the shortest delay, no starts counted. */
void restart_reset(struct restart_history *h, const struct host_config *host);
void restart_history_done(struct restart_history *h);
/* Whether the definition's policy restarts the VM after this exit. */
bool restart_wanted(int policy, enum vm_exit_reason reason);
/* Drops starts older than the window; false if the limit is reached. */
bool restart_start_allowed(struct restart_history *h, const struct host_config *host, usec_t now);
/* Why the limit was reached (after restart_start_allowed() said so). */
char *restart_refusal(const struct restart_history *h, const struct host_config *host);
/* Counts a start at now. */
int restart_note_start(struct restart_history *h, usec_t now);
/* The last start became ready. */
void restart_note_ready(struct restart_history *h);
/* The delay before the next automatic restart, and the one after it
 * doubled. ready_at: when the last boot became ready (0: it never did). */
usec_t restart_next_delay(struct restart_history *h, const struct host_config *host, usec_t ready_at, usec_t now);
