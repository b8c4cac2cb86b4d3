/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One VM instance: bring-up, supervision of its processes, and teardown.
 * Shared by "vmd run" and the daemon.
 *
 * Bring-up: lock the VM's run directory, create ephemeral disks, bind one
 * listening socket per virtiofsd and start them (the pre-bound socket is
 * their readiness: QEMU can connect before they reach accept()), then start
 * QEMU paused, connect to its QMP, console, notify and agent sockets, and let
 * it run. READY=1 on the notify port makes the VM ready.
 *
 * The VM is one unit: if QEMU exits, its virtiofsd instances are stopped;
 * if a virtiofsd dies, QEMU is stopped (a guest whose store vanished would
 * hang forever). Teardown waits for every child and then removes sockets,
 * pid files and ephemeral disks. Persistent volumes and key directories are
 * never removed. */

#include "def.h"
#include "host.h"
#include "loop.h"
#include "qga.h"
#include "virtiofsd.h"

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

struct vm_options {
	int accel;                         /* resolved: ACCEL_KVM or ACCEL_TCG */
	const struct virtiofsd_caps *caps; /* probed once */
	const char *qemu;                  /* resolved absolute paths */
	const char *virtiofsd;
	bool die_with_parent;              /* children die with vmd (vmd run) */
	/* How long to wait for the run-dir lock: a killed predecessor's QEMU
	 * can hold it for a moment while the kernel tears it down. */
	usec_t lock_wait;
	/* Keep state.json in the run directory so a later daemon can adopt
	 * the VM (the daemon; not vmd run). */
	bool save_state;
	/* The host networks (taps, WireGuard hubs); NULL: none are up. */
	struct hostnet *net;
	/* libvirt's connections, for VMs of the libvirt driver; NULL: none. */
	struct lv *lv;
};

/* Takes ownership of def. host and opts must outlive the vm. */
int vm_new(struct loop *l, const struct host_config *host, const struct vm_options *opts,
	   struct vm_def *def, const struct vm_callbacks *cb, void *userdata, struct vm **ret);
void vm_free(struct vm *vm);

/* Starts a stopped VM. Synchronous failures are logged, undone and
 * returned; later ones come through exited(). */
int vm_start(struct vm *vm);
/* Does the part of vm_start() that starts no process (lock, disks, checks)
 * ahead of time, e.g. during a restart's backoff. Undone by vm_stop(),
 * vm_set_def(), vm_unprepare() or parking the VM other than in backoff. */
int vm_prepare(struct vm *vm);
void vm_unprepare(struct vm *vm);
struct vmstate;
/* Takes over a VM that a previous daemon started and that still runs:
 * its QEMU and virtiofsd are checked by pid and start time, then vmd
 * reconnects to its sockets. A VM that was not fully started (no READY),
 * or whose virtiofsd is gone, is killed and cleaned up instead, like
 * libvirt does: -ESTALE. The vm must be stopped and have st's definition. */
int vm_adopt(struct vm *vm, const struct vmstate *st);

struct lv_conn;
/* Takes over a running libvirt domain that vmd made (found by its
 * metadata, whose text st holds): as vm_adopt(), -ESTALE if it was not
 * fully started (then it is destroyed). */
int vm_adopt_domain(struct vm *vm, struct lv_conn *c, const char *domain, const struct vmstate *st);

/* Graceful: ACPI powerdown, SIGTERM after stop_timeout_s, SIGKILL 5 s
 * later. force: SIGKILL now. */
int vm_stop(struct vm *vm, bool force);
/* Runs a command through the guest agent. */
int vm_exec(struct vm *vm, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata);

/* Lets go of a running VM without stopping it (a daemon exiting with
 * --keep-running): closes vmd's ends, leaves processes, sockets, disks and
 * state.json for the next daemon. The vm is stopped afterwards. */
void vm_detach(struct vm *vm);

/* For a VM no one runs: if its run directory is not locked by a live
 * QEMU or vmd, removes it and the VM's ephemeral disks. -EBUSY if live. */
int vm_sweep_stale(const struct host_config *host, const char *name);

/* For a stopped VM: a new definition (takes ownership; same name). */
void vm_set_def(struct vm *vm, struct vm_def *def);
/* For a stopped VM: park it in VM_BACKOFF, VM_FAILED or VM_STOPPED. */
void vm_set_idle_state(struct vm *vm, enum vm_state state);
/* The owner's restart count, kept in the state file across daemons. */
void vm_set_restarts(struct vm *vm, uint32_t restarts);
/* CLOCK_MONOTONIC usec when the current boot started (0 if stopped). */
usec_t vm_started_usec(const struct vm *vm);
/* When the last boot started to go down (its QEMU or a virtiofsd died, or
 * a stop began tearing it down); 0 if it never did. */
usec_t vm_down_usec(const struct vm *vm);

/* A VM's libvirt domain is vmd-NAME. */
char *vmlv_domain_name(const char *vm);
/* Which vmd made a domain (in its metadata): <state_dir>/instance-id,
 * made on first use. */
#define VMLV_INSTANCE_ID_LEN 32
/* In a libvirt VM's run directory: the URI of the libvirtd it runs on. */
#define VMLV_URI_FILE "libvirt-uri"
int vmlv_instance_id(const struct host_config *host, char out[VMLV_INSTANCE_ID_LEN + 1]);

/* Where it runs: "local" or the name of one of the settings' hosts. */
const char *vm_host(const struct vm *vm);
/* "qemu" or "libvirt": of the boot that runs, else of the definition. */
const char *vm_driver_name(const struct vm *vm);
/* Its libvirt domain's id while one runs, else 0. */
int vm_domain_id(const struct vm *vm);

const struct vm_def *vm_def(const struct vm *vm);
const char *vm_name(const struct vm *vm);
enum vm_state vm_get_state(const struct vm *vm);
bool vm_is_ready(const struct vm *vm);
pid_t vm_qemu_pid(const struct vm *vm);
usec_t vm_ready_usec(const struct vm *vm); /* start to READY */
const char *vm_log_path(const struct vm *vm);
/* The last n lines this boot wrote to the log. */
char *vm_log_tail(const struct vm *vm, unsigned n);

/* Paths of a VM's files, derived from the validated name only. */
char *vm_run_dir(const struct host_config *host, const char *name);
char *vm_disk_dir(const struct host_config *host, const char *name);
char *vm_volume_dir(const struct host_config *host, const char *name);
