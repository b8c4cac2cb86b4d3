/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "restart.h"

static usec_t ms(uint32_t v)
{
	return (usec_t)v * USEC_PER_MSEC;
}

void restart_reset(struct restart_history *h, const struct host_config *host)
{
	h->n_starts = 0;
	h->unready = 0;
	h->delay = ms(host->restart_delay_min_ms);
}

void restart_history_done(struct restart_history *h)
{
	h->starts = mfree(h->starts);
	h->n_starts = 0;
}

bool restart_wanted(int policy, enum vm_exit_reason reason)
{
	switch (policy) {
	case RESTART_ALWAYS:
		return true;
	case RESTART_ON_FAILURE:
		/* A clean poweroff is not a failure; a reboot is the guest
		 * asking to come back, with fresh disks. */
		return reason != VM_EXIT_POWEROFF;
	default:
		return false;
	}
}

bool restart_start_allowed(struct restart_history *h, const struct host_config *host, usec_t now)
{
	usec_t window = (usec_t)host->start_limit_interval_s * USEC_PER_SEC;
	size_t k = 0;

	for (size_t i = 0; i < h->n_starts; i++)
		if (now - h->starts[i] < window)
			h->starts[k++] = h->starts[i];
	h->n_starts = k;
	return k < host->start_limit_burst && h->unready < host->start_limit_unready;
}

char *restart_refusal(const struct restart_history *h, const struct host_config *host)
{
	if (h->unready >= host->start_limit_unready)
		return xasprintf("%u starts in a row never became ready", h->unready);
	return xasprintf("started %zu times within %u s", h->n_starts, host->start_limit_interval_s);
}

int restart_note_start(struct restart_history *h, usec_t now)
{
	usec_t *st = realloc(h->starts, (h->n_starts + 1) * sizeof(*st));

	h->unready++;
	if (!st)
		return -ENOMEM;
	h->starts = st;
	h->starts[h->n_starts++] = now;
	return 0;
}

void restart_note_ready(struct restart_history *h)
{
	h->unready = 0;
}

usec_t restart_next_delay(struct restart_history *h, const struct host_config *host, usec_t ready_at, usec_t now)
{
	usec_t delay;

	/* A VM that stayed up a while starts again from the shortest delay. */
	if (ready_at && now - ready_at >= (usec_t)host->restart_reset_s * USEC_PER_SEC)
		h->delay = ms(host->restart_delay_min_ms);
	delay = h->delay;
	h->delay *= 2;
	if (h->delay > ms(host->restart_delay_max_ms))
		h->delay = ms(host->restart_delay_max_ms);
	return delay;
}
