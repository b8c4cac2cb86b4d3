/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's control socket (<run_dir>/vmd.sock): JSON lines, one
 * request per line, one or more replies per request. The protocol is
 * described in README.md ("Control protocol").
 *
 * The socket is mode 0660, owned by root and the control_group; peers are
 * checked again with SO_PEERCRED/SO_PEERGROUPS. Requests are bounded
 * (64 KiB a line), so are clients (64) and what is queued for each (4 MiB);
 * a malformed request gets an error reply and the connection stays usable.
 * No peer can lock the socket: a connection with nothing in progress is
 * closed after control_idle_timeout_s, or at once when a new one needs its
 * slot, and the last CONTROL_ROOT_RESERVE slots are for root. */

#include <jansson.h>

#include "loop.h"
#include "manager.h"

#define CONTROL_MAX_LINE (64 * 1024)
#define CONTROL_MAX_CLIENTS 64
#define CONTROL_ROOT_RESERVE 8
#define CONTROL_MAX_OUT (4 * 1024 * 1024)

struct control;

/* Reload: returns 0 and a summary, or -EINVAL and the errors as an array
 * of "FILE: FIELD: reason" strings. */
typedef int (*control_reload_cb)(void *userdata, json_t **ret_summary, json_t **ret_errors);

int control_new(struct loop *l, struct manager *m, const struct host_config *host, control_reload_cb reload,
		void *userdata, struct control **ret);
void control_free(struct control *c);
static inline void control_freep(struct control **c)
{
	if (*c)
		control_free(*c);
	*c = NULL;
}

/* "shutdown": power every VM off and end the daemon, as SIGTERM does. The
 * reply comes at once; the client then waits for the connection to close,
 * which happens when the daemon exits. Without a callback (tests, fuzzing)
 * the command is refused. */
typedef void (*control_shutdown_cb)(void *userdata);
void control_set_shutdown(struct control *c, control_shutdown_cb shutdown, void *userdata);

/* Serves one connected socket as if it had been accepted (tests, fuzzing:
 * the peer is trusted). */
int control_add_client(struct control *c, int fd);
/* The path of the socket (NULL when made with control_new_unbound). */
const char *control_path(const struct control *c);
/* A control without a listening socket, for control_add_client(). */
int control_new_unbound(struct loop *l, struct manager *m, control_reload_cb reload, void *userdata,
			struct control **ret);
