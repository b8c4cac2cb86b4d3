/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's view of its VMs: which should run, the restart policy
 * (backoff from restart_delay_min_ms doubling to restart_delay_max_ms,
 * reset after restart_reset_s of READY uptime; more than start_limit_burst
 * starts in start_limit_interval_s, or than start_limit_unready starts in a
 * row that never became ready, make a VM "failed"), applying a new set
 * of definitions, and adopting VMs a previous daemon left running. */

#include <jansson.h>

#include "defset.h"
#include "loop.h"
#include "qga.h"
#include "vm.h"

struct manager;

/* The end of an asynchronous request: error 0, or -errno with a message. */
typedef void (*manager_done_cb)(void *userdata, int error, const char *message);

int manager_new(struct loop *l, const struct host_config *host, const struct vm_options *opts,
		struct manager **ret);
void manager_free(struct manager *m);

/* At daemon start: adopts every VM a previous daemon left running, and
 * removes run directories and ephemeral disks that no live VM owns. */
int manager_adopt_all(struct manager *m);

/* Brings the running set in line with set (valid, fully loaded; its
 * definitions are taken). Fills *ret (if given) with the names added,
 * removed, changed and unchanged. */
int manager_apply(struct manager *m, struct defset *set, json_t **ret);

/* Before manager_apply(): every VM that runs and whose definition set
 * changes must be able to boot the new one (plan_check()), or the reload
 * would stop it for nothing. -EINVAL with "FILE: FIELD: reason" errors. */
int manager_check(struct manager *m, const struct defset *set, struct defset_errors *errors);

/* restart: if the VM runs, its next boot is checked first (plan_check());
 * one that cannot start fails the request and leaves the VM running.
 * start: done when READY (or when the start failed); restart likewise;
 * stop: done when stopped. -ENOENT for an unknown name. */
int manager_start(struct manager *m, const char *name, manager_done_cb cb, void *userdata);
int manager_stop(struct manager *m, const char *name, manager_done_cb cb, void *userdata);
int manager_restart(struct manager *m, const char *name, manager_done_cb cb, void *userdata);
/* Runs one command at a time per VM, in order. */
int manager_exec(struct manager *m, const char *name, char **argv, usec_t timeout, qga_exec_cb cb,
		 void *userdata);
/* Forgets every pending callback for userdata (its client went away). */
void manager_cancel(struct manager *m, void *userdata);

/* Status of one VM (name) or all (NULL): an array of objects. NULL if
 * name is unknown. */
json_t *manager_status(struct manager *m, const char *name);
/* The VM's log file, or NULL for an unknown name. */
const char *manager_log_path(struct manager *m, const char *name);

/* The serial console (console.h): cc joins NAME's console as its writer or
 * a read-only observer; it gets the output and the events from then on. Fails with *ret_error for people: no such VM, not running,
 * or (-EBUSY) the console has a writer and force is not set. */
struct console_client;
int manager_console_attach(struct manager *m, const char *name, struct console_client *cc, bool writer, bool force,
			   char **ret_error);
/* The backlog, to cc once attached (after the reply that says so). */
void manager_console_replay(struct manager *m, struct console_client *cc);
void manager_console_detach(struct manager *m, struct console_client *cc);
/* Typed input from cc, which must hold its console: the bytes written, or
 * -EPERM (not the writer), -EAGAIN (the guest's console is busy or not up:
 * dropped), -errno. */
int manager_console_input(struct manager *m, struct console_client *cc, const char *buf, size_t n);

/* How many autostart VMs were launched by the last apply. */
size_t manager_launched(struct manager *m);

/* Stops every VM gracefully, in parallel (keep_running: leaves them all
 * running, for a daemon upgrade); done once nothing runs any more. */
void manager_shutdown(struct manager *m, bool keep_running, manager_done_cb cb, void *userdata);
/* A second signal: kill what still runs. */
void manager_kill_all(struct manager *m);
