/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One VM instance: its lifecycle, shared by "vmd run" and the daemon.
 *
 * Bring-up: prepare the boot (plan.h: lock the run directory, disks, key
 * directories, the kernel command line), then hand it to the driver the
 * definition names (driver.h), which starts the share processes and the
 * hypervisor. READY=1 on the notify channel makes the VM ready. With
 * opts.async_unpack (the daemon), an image that is not unpacked yet is
 * unpacked first by a helper process (plan_unpack_argv()) while the VM
 * stays in VM_PREPARING: vm_start() returns once it runs, a stop kills
 * it, and its failure is a failed start (exited(), VM_EXIT_START_FAILED,
 * the helper's message as the detail).
 *
 * The VM is one unit: if the hypervisor ends, its virtiofsd instances are
 * stopped; if a virtiofsd dies, the hypervisor is stopped (a guest whose
 * store vanished would hang forever). Teardown waits for every child and
 * then removes sockets, pid files and ephemeral disks. Persistent volumes
 * and key directories are never removed. */

#include "driver.h"

enum vm_state {
	VM_STOPPED,
	VM_PREPARING,
	VM_STARTING_SHARES,
	VM_BOOTING,
	VM_RUNNING,
	VM_STOPPING,
	VM_BACKOFF,
	VM_FAILED,
	_VM_STATE_MAX,
};
extern const char *const vm_state_names[];

enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_POWEROFF,      /* the guest powered off */
	VM_EXIT_REBOOT,        /* the guest rebooted (or panicked: panic=-1) */
	VM_EXIT_STOPPED,       /* vmd stopped it */
	VM_EXIT_CRASHED,       /* QEMU died */
	VM_EXIT_SHARE_FAILED,  /* a virtiofsd died */
	VM_EXIT_READY_TIMEOUT, /* no READY=1 in time */
	VM_EXIT_START_FAILED,  /* bring-up failed */
	VM_EXIT_FAILURE,       /* the guest powered off reporting a failure (an image's
				* entrypoint ended with a non-zero EXIT_STATUS=) */
	_VM_EXIT_MAX,
};
extern const char *const vm_exit_reason_names[];

struct vm;

struct vm_callbacks {
	void (*state_changed)(struct vm *vm, enum vm_state old, void *userdata);
	void (*ready)(struct vm *vm, void *userdata);
	/* After teardown: nothing of this boot is left. detail explains. */
	void (*exited)(struct vm *vm, enum vm_exit_reason reason, const char *detail, void *userdata);
	/* Console output (it also goes to the VM's log). Optional. */
	void (*console)(struct vm *vm, const char *buf, size_t n, void *userdata);
};


/* Takes ownership of def. host and opts must outlive the vm. */
int vm_new(struct loop *l, const struct host_config *host, const struct vm_options *opts,
	   struct vm_def *def, const struct vm_callbacks *cb, void *userdata, struct vm **ret);
void vm_free(struct vm *vm);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct vm *, vm_free);

/* Starts a stopped VM. Synchronous failures are logged, undone and
 * returned; later ones come through exited(). */
int vm_start(struct vm *vm);
/* Does the part of vm_start() that starts no process (lock, disks, checks)
 * ahead of time, e.g. during a restart's backoff. Undone by vm_stop(),
 * vm_set_def(), vm_unprepare() or parking the VM other than in backoff. */
int vm_prepare(struct vm *vm);
void vm_unprepare(struct vm *vm);
/* Takes over a VM that a driver found running (discover): its processes
 * are checked by identity, then vmd reconnects to them. A VM that was not
 * fully started (no READY), or whose virtiofsd is gone, is ended and
 * cleaned up instead, like libvirt does: -ESTALE. -EBUSY if the VM is not
 * idle or another vmd holds its run directory. The vm must have f's
 * definition. */
int vm_adopt(struct vm *vm, const struct drv_found *f);

/* Graceful: ACPI powerdown, SIGTERM after stop_timeout_s, SIGKILL 5 s
 * later. force: SIGKILL now. */
int vm_stop(struct vm *vm, bool force);
/* Runs a command through the guest agent. */
int vm_exec(struct vm *vm, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata);
/* The commands started with userdata report to nobody. */
void vm_exec_cancel(struct vm *vm, void *userdata);

/* Lets go of a running VM without stopping it (a daemon exiting with
 * --keep-running): closes vmd's ends, leaves processes, sockets, disks and
 * state.json for the next daemon. The vm is stopped afterwards. */
void vm_detach(struct vm *vm);

/* For a stopped VM: a new definition (takes ownership; same name). */
void vm_set_def(struct vm *vm, struct vm_def *def);
/* For a stopped VM: park it in VM_BACKOFF, VM_FAILED or VM_STOPPED. */
void vm_set_idle_state(struct vm *vm, enum vm_state state);
/* The owner's restart count and how the previous boot ended (NULL: none),
 * kept in the state file across daemons. */
void vm_set_history(struct vm *vm, uint32_t restarts, const char *last_exit);
/* CLOCK_MONOTONIC usec when the current boot started (0 if stopped). */
usec_t vm_started_usec(const struct vm *vm);
/* When the last boot started to go down (its QEMU or a virtiofsd died, or
 * a stop began tearing it down); 0 if it never did. */
usec_t vm_down_usec(const struct vm *vm);

/* Where it runs: "local" or the name of one of the settings' hosts. */
const char *vm_host(const struct vm *vm);
/* "qemu" or "libvirt": of the boot that runs, else of the definition. */
const char *vm_driver_name(const struct vm *vm);
/* Its libvirt domain's name while one runs, else NULL. */
const char *vm_domain(const struct vm *vm);

const struct vm_def *vm_def(const struct vm *vm);
const char *vm_name(const struct vm *vm);
enum vm_state vm_get_state(const struct vm *vm);
bool vm_is_ready(const struct vm *vm);
/* Typed input for the serial console: the bytes taken (the rest is
 * dropped; a terminal's typing never fills the channel), or -ENOTCONN
 * when no boot runs, -errno. */
int vm_console_write(struct vm *vm, const void *buf, size_t n);
/* The status the guest reported with EXIT_STATUS= on io.vmd.notify during
 * the last boot (an image's entrypoint), or -1. */
int vm_exit_status(const struct vm *vm);
/* QEMU's pid while it runs, else 0. */
pid_t vm_pid(const struct vm *vm);
usec_t vm_ready_usec(const struct vm *vm); /* start to READY */
const char *vm_log_path(const struct vm *vm);
/* The last n lines this boot wrote to the log. */
char *vm_log_tail(const struct vm *vm, unsigned n);
