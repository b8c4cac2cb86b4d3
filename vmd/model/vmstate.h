/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What a daemon-managed VM leaves in its run directory (state.json) so that
 * the next daemon can adopt it: the definition it runs, and its processes
 * identified by pid *and* start time, so a recycled pid is never mistaken
 * for one of ours. */

#include <sys/types.h>

#include "def.h"
#include "child.h"

/* The longest last_exit a state file may hold. */
#define VMSTATE_LAST_EXIT_MAX 1024

struct vmstate {
	struct vm_def *def;
	struct proc_id qemu;
	struct proc_id *shares; /* in start order: the store, keys, shares */
	size_t n_shares;
	uint64_t started_at; /* CLOCK_REALTIME, usec */
	uint64_t boot_usec;  /* start to READY; 0 if not ready */
	bool ready;
	uint32_t restarts;
	/* How the boot before this one ended ("crashed: ..."); NULL: none. */
	char *last_exit;
	/* A libvirt domain's: which vmd made it (<state_dir>/instance-id). */
	char *instance;
};

void vmstate_clear(struct vmstate *s);
/* Written atomically (write_file()). */
int vmstate_write(const char *dir, const struct vmstate *s);
int vmstate_read(const char *dir, struct vmstate *ret);
/* The same as text (a libvirt domain keeps it in its metadata), and back;
 * the text is outside input there, and checked as such. */
char *vmstate_format(const struct vmstate *s);
int vmstate_parse(const char *buf, size_t len, struct vmstate *ret);
