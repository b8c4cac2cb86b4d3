/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The VM driver interface: what runs a prepared VM. Two drivers implement
 * it, in the style of crun's cgroup managers: "qemu" (vmd's own QEMU and
 * virtiofsd processes, driver-qemu.c) and "libvirt" (a transient libvirt
 * domain, driver-libvirt.c).
 *
 * The lifecycle (vm.c) owns the plan and the state machine, and calls a
 * driver only through its ops. A driver reports back only through the
 * struct drv_events it is given: it never calls into vm.c, and each keeps
 * its own state behind struct drv_vm.
 *
 * The share processes (virtiofsd) belong to the plan: a driver starts them
 * (qemu) or finds the ones its hypervisor started (libvirt), always with
 * the lifecycle's exit callback, and the lifecycle decides what a dead one
 * means. */

#include "child.h"
#include "def.h"
#include "host.h"
#include "loop.h"
#include "qga.h"
#include "virtiofsd.h"
#include "vmlog.h"
#include "vmstate.h"

struct hostnet;
struct lv;

/* What the host gives every VM: resolved once by the caller. */
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
	/* Say on stderr whether an image was unpacked or cached (vmd run). */
	bool announce;
	/* An image that is not unpacked yet is unpacked by a helper process
	 * (plan_unpack_argv()) while the loop goes on, not in this process,
	 * which would answer nothing meanwhile (the daemon; not vmd run). */
	bool async_unpack;
	/* The driver of every VM; NULL: as each definition says (the unit
	 * tests give a fake one). */
	const struct vm_driver *driver;
};


/* The programs every VM on this host shares, resolved once (vm_tools_*):
 * the accelerator, QEMU and virtiofsd as absolute paths, and what that
 * virtiofsd can do. */
struct vm_tools {
	int accel;
	const char *accel_reason;
	char *qemu;
	char *virtiofsd;
	struct virtiofsd_caps caps;
};

/* accel: the settings' choice or an override (enum accel). Failures are
 * logged, with "who: " in front when who is not NULL. */
int vm_tools_resolve(const struct host_config *host, int accel, const char *who, struct vm_tools *ret);
void vm_tools_done(struct vm_tools *t);
/* Options with t's accelerator and programs (t must outlive them). */
struct vm_options vm_tools_options(const struct vm_tools *t);

struct vm_share {
	char *tag;
	char *source;
	/* source's first root_len bytes are the host's (store_dir, keys_dir,
	 * a key source's parent; 0: "/"); below them, vmd opens the directory
	 * with no symlink followed when it starts virtiofsd. */
	size_t root_len;
	/* An empty directory in the run directory where virtiofsd, in a mount
	 * namespace of its own, finds the directory vmd opened (spawn_dir). */
	char *mountpoint;
	char *socket;
	char *pidfile;
	enum virtiofsd_cache cache;
	bool read_only;
	struct child proc;
};

struct vm_image {
	char *path;
	/* path's first root_len bytes are state_dir; below them, vmd opens
	 * the image with no symlink followed when it starts QEMU. */
	size_t root_len;
	bool base_blockdev; /* an overlay's base is a block device (seen when prepared) */
	const struct def_disk *disk;
};

/* One boot of a VM, prepared (plan.c): every path decided, the run
 * directory locked, disks and key directories in place, no process yet. */
struct vm_plan {
	struct loop *loop;
	const struct vm_def *def;
	const struct host_config *host;
	const struct vm_options *opts;
	char *dir;        /* the run directory */
	char *disk_dir;   /* where its ephemeral disks go */
	int lock_fd;      /* the run directory's lock (-EBADF: not ours) */
	struct vmlog *log;
	char *system;     /* def->system resolved */
	char *cmdline;    /* the kernel command line */
	struct vm_share *shares; /* the store, then keys, then shares */
	size_t n_shares;
	struct vm_image *images;
	size_t n_images;
	/* An image VM (def->image): what its init runs (the fw_cfg entry,
	 * guestconf.h), and a shared lock on its cache entry, which QEMU
	 * inherits so the entry is never removed under a running VM. */
	char *image_conf;
	int image_lock_fd;
	/* The image's cache entry, taken ahead without waiting
	 * (plan_take_image()); NULL: plan_prepare() gets it, unpacking it if
	 * need be. */
	struct image_cached *image_taken;
	/* How long the unpack helper took for this boot (0: none ran), for
	 * plan_prepare()'s "unpacked" line. */
	usec_t image_unpack_usec;

	/* The boot as the lifecycle sees it, for state files and metadata. */
	usec_t t_start;       /* CLOCK_MONOTONIC */
	uint64_t started_at;  /* CLOCK_REALTIME of t_start */
	usec_t boot_usec;     /* start to READY, 0 until then */
	bool ready;
	uint32_t restarts;
	const char *last_exit; /* how the previous boot ended, or NULL */
};

/* How the main part of a boot (QEMU, the domain) ended. */
enum drv_end {
	DRV_END_POWEROFF,  /* the guest powered off */
	DRV_END_REBOOT,    /* the guest reset (or panicked with panic=-1) */
	DRV_END_PANIC,     /* the guest kernel panicked (pvpanic) */
	DRV_END_EXITED,    /* the hypervisor exited, for a reason it did not say */
	DRV_END_SHUTDOWN,  /* shut down from outside vmd (virsh shutdown) */
	DRV_END_DESTROYED, /* destroyed from outside vmd (virsh destroy) */
	DRV_END_CRASHED,   /* the hypervisor failed, as it says */
	DRV_END_GONE,      /* not there any more after a reconnect */
};

struct drv_events {
	/* The main part ended. detail: for messages ("QEMU exited with status
	 * 1"); early: the same for an end before READY. */
	void (*ended)(void *userdata, enum drv_end end, const char *detail, const char *early);
	/* Console output, and io.vmd.notify data (sd_notify lines). */
	void (*console)(void *userdata, const char *buf, size_t n);
	void (*notify)(void *userdata, const char *buf, size_t n);
	/* The boot could not be set going after start() returned. */
	void (*start_failed)(void *userdata, const char *detail);
	/* A graceful stop was not delivered after all. */
	void (*stop_failed)(void *userdata);
	/* The hypervisor's manager went away (up false) or came back with
	 * the VM still running. */
	void (*link)(void *userdata, bool up);
	/* For the plan's share processes. */
	child_exit_cb share_exited;
	void *userdata;
};

enum drv_kill {
	DRV_TERM,      /* ask the hypervisor to end (SIGTERM; libvirt destroy) */
	DRV_KILL,      /* end it now (SIGKILL; libvirt destroy) */
	DRV_KILL_WAIT, /* end it and wait (undoing a start, vm_free) */
};

/* A running VM a driver found (discover): a previous daemon left it. */
struct drv_found {
	const struct vm_driver *driver;
	struct vmstate st;  /* what it runs; the adopter may take st.def */
	char *where;        /* for messages: "libvirt qemu:///system" */
	void *handle;       /* the driver's */
};

/* at_start: the daemon is starting (nothing configured yet); later, a
 * reconnect found it. */
typedef void (*drv_found_cb)(struct drv_found *f, bool at_start, void *userdata);

struct drv_vm;

struct vm_driver {
	const char *name;
	/* The hypervisor inherits the run directory's lock: an adopted VM's
	 * is held already (qemu), else the adopter takes it (libvirt). */
	bool lock_inherited;
	/* For messages: what DRV_TERM does, and what is said before DRV_KILL
	 * (NULL: nothing) when the hypervisor outlived it. */
	const char *term_action;
	const char *kill_message;

	/* A driver's state for one boot of p, reporting through ev (both
	 * must outlive it). */
	int (*new)(struct vm_plan *p, const struct drv_events *ev, struct drv_vm **ret);
	/* Lets go of the boot and frees d; processes still running run on. */
	void (*release)(struct drv_vm *d);

	/* Starts the plan's share processes (optional: the hypervisor may). */
	int (*start_shares)(struct drv_vm *d);
	/* Starts the boot; synchronous failures are returned (the caller
	 * destroys and releases), later ones come through ev. */
	int (*start)(struct drv_vm *d);
	/* ACPI powerdown; -errno if it cannot be asked now. */
	int (*stop)(struct drv_vm *d);
	void (*destroy)(struct drv_vm *d, enum drv_kill how);
	/* Whether the main part runs, as far as vmd knows. */
	bool (*running)(const struct drv_vm *d);
	/* The guest said READY=1 (p->ready and p->boot_usec are set): keep
	 * it where the next daemon looks. */
	void (*ready)(struct drv_vm *d);
	/* The boot is going down: close vmd's channels to it. */
	void (*disconnect)(struct drv_vm *d);
	/* The guest agent, NULL if none is connected. */
	struct qga *(*agent)(struct drv_vm *d);
	/* Typed input for the guest's serial console: the bytes taken, or
	 * -EAGAIN (full: the rest is dropped), -ENOTCONN, -errno. */
	ssize_t (*console_write)(struct drv_vm *d, const void *buf, size_t n);
	/* A share process ended since `since` usec while the main part still
	 * runs: true to give the hypervisor longer to explain (optional). */
	bool (*hold_share_blame)(struct drv_vm *d, usec_t since);
	/* For status: QEMU's pid, or the domain's name (optional). */
	pid_t (*pid)(const struct drv_vm *d);
	const char *(*domain)(const struct drv_vm *d);

	/* Follows f's running VM with this plan (made from f->st's
	 * definition). -ESTALE with *why if it is not worth keeping: then
	 * its processes are ended and forgotten. */
	int (*adopt)(struct drv_vm *d, const struct drv_found *f, const char **why);
	/* Lists what runs (synchronously), and keeps reporting what a
	 * reconnect finds. */
	int (*discover)(const struct host_config *host, const struct vm_options *opts, drv_found_cb cb,
			void *userdata);
	/* Ends a found VM that no one wants (f stays the caller's). */
	void (*discard)(const struct drv_found *f);
};

extern const struct vm_driver driver_qemu;
extern const struct vm_driver driver_libvirt;
/* Both, in the order discovery asks them: libvirt's domains first, as
 * their run directories are unlocked while no daemon follows them. */
extern const struct vm_driver *const vm_drivers[];

const struct vm_driver *driver_for(int driver); /* enum driver */

/* What vmd hands the hypervisor, opened as it starts it (and not when the
 * boot was prepared, during a restart's backoff): image i read-write, a
 * regular file with one link; a share's directory. Below their trusted
 * roots (root_len) no symlink is followed. Failures are logged as
 * "NAME: volume VOL: ..."; returns the fd or -errno. */
int vm_image_open(const struct vm_plan *p, size_t i);
int vm_share_open(const struct vm_plan *p, const struct vm_share *s);

/* The pure part of each driver, for the golden tests: the plan as QEMU's
 * argv (with n_taps tap queues, and vhost-net or not) and as libvirt's
 * domain XML (with vmd's metadata text). */
int qemu_plan_argv(const struct vm_plan *p, unsigned n_taps, bool vhost, char ***ret);
int libvirt_plan_xml(const struct vm_plan *p, bool kvm, const char *metadata, char **ret);
