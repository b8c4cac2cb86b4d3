/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A guest-agent client for any number of commands at once: synchronise
 * with guest-sync-delimited (retried until the agent answers), start each
 * command with guest-exec, poll each pid with guest-exec-status, decode the
 * captured output. A command that outlives its timeout is killed in the
 * guest (with a shell: the agent has no command for it). */

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
	bool left_running; /* -ETIMEDOUT, and the kill did not take */
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
DEFINE_TRIVIAL_CLEANUP_FUNC(struct qga *, qga_free);

/* Runs argv[0] (searched in the guest's PATH) with argv[1..], which must
 * be UTF-8 (-EILSEQ otherwise: the protocol is JSON); the whole
 * exchange is bounded by timeout (0: no bound), and the agent must answer
 * its first sync within 60 s. cb runs from the loop, never inside this
 * call. Past its timeout the command is killed in the guest, and cb gets
 * -ETIMEDOUT with no error_text once it is gone (or left_running after
 * 10 s of trying). */
int qga_exec(struct qga *g, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata);
/* The commands started with userdata run on, but their cb is not called. */
void qga_cancel(struct qga *g, void *userdata);
