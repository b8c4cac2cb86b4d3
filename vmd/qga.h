/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A guest-agent client for one command at a time: synchronise with
 * guest-sync-delimited (retried until the agent answers), run the command
 * with guest-exec, poll guest-exec-status, decode the captured output. */

#include "loop.h"

struct qga;

struct qga_result {
	int error;  /* 0, or -errno: -ENOEXEC if the command could not be started,
		     * -ETIMEDOUT, -ECONNRESET, -EPROTO... */
	const char *error_text; /* agent error description, if any */
	int status; /* exit code, or 128+signal */
	const char *out, *err; /* captured output (not NUL-safe; use lengths) */
	size_t out_len, err_len;
	bool truncated; /* the agent cut the output */
};

typedef void (*qga_exec_cb)(struct qga *g, const struct qga_result *res, void *userdata);

/* Takes ownership of fd (connected to the agent chardev). */
int qga_new(struct loop *l, int fd, struct qga **ret);

/* Another way to reach the agent: one that answers each command itself
 * and synchronises on its own (libvirt's virDomainQemuAgentCommand).
 * Returns 0 with the reply's JSON text in *ret_reply (freed by qga), or
 * -errno with a reason in *ret_error (not freed). */
typedef int (*qga_call_fn)(void *userdata, const char *cmd, char **ret_reply, const char **ret_error);
int qga_new_call(struct loop *l, qga_call_fn call, void *call_userdata, struct qga **ret);
void qga_free(struct qga *g);
static inline void qga_freep(struct qga **g)
{
	if (*g)
		qga_free(*g);
	*g = NULL;
}

/* Runs argv[0] (searched in the guest's PATH) with argv[1..], which must
 * be UTF-8 (-EILSEQ otherwise: the protocol is JSON); the whole
 * exchange is bounded by timeout (0: no bound), and the agent must answer
 * its first sync within 60 s. */
int qga_exec(struct qga *g, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata);
