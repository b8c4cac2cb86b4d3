/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What vm.c (the lifecycle and the QEMU driver) and vm-libvirt.c (the
 * libvirt driver) share; nothing outside them includes this. */

#include "libvirt.h"
#include "vm.h"
#include "vmlog.h"
#include "vmstate.h"

enum vm_timer { TIMER_NONE, TIMER_READY, TIMER_POWERDOWN, TIMER_TERM, TIMER_TEARDOWN };

struct vm_child {
	char *what; /* "QEMU", "virtiofsd for nix-store" */
	pid_t pid;
	int pidfd;
	struct loop_source *src;
	bool running;
};

struct vm_share {
	char *tag;
	char *source;
	char *socket;
	char *pidfile;
	enum virtiofsd_cache cache;
	bool read_only;
	struct vm_child proc;
};

struct vm_image {
	char *path;
	const struct def_disk *disk;
};

struct vm {
	struct loop *loop;
	const struct host_config *host;
	struct vm_options opts;
	struct vm_def *def;
	const struct vm_callbacks *cb;
	void *userdata;

	enum vm_state state;
	bool ready;
	bool stop_requested;
	bool stop_forced;
	bool tearing_down;
	enum vm_exit_reason reason;
	char *detail;
	const char *shutdown_reason; /* from QMP SHUTDOWN; static strings */

	char *dir, *disk_dir, *log_path;
	char *system; /* def->system resolved, for this boot */
	char *cmdline; /* the kernel command line, for this boot */
	bool prepared; /* prepare() done, no process started yet */
	int lock_fd;
	struct vmlog log;

	struct vm_share *shares;
	size_t n_shares;
	struct vm_image *images;
	size_t n_images;
	struct vm_child qemu;

	struct qmp *qmp;
	struct qga *qga;
	int console_fd, notify_fd;
	struct loop_source *console_src, *notify_src;
	char notify_buf[512];
	size_t notify_len;

	struct loop_source *timer;
	/* A virtiofsd that exited cleanly: blamed only if QEMU does not exit
	 * right after it (see on_share_exit). */
	struct loop_source *share_timer;
	char *share_detail;
	/* QEMU and virtiofsd write the log directly; check its size now and
	 * then, not only when vmd writes to it. */
	struct loop_source *log_timer;
	int timer_kind; /* enum vm_timer */

	usec_t t_start, t_ready;
	usec_t t_down; /* when the unit started to go down (QEMU or a share died) */
	uint64_t started_at; /* CLOCK_REALTIME of t_start, for the state file */
	uint64_t log_offset; /* where this boot's output starts */
	uint32_t restarts;   /* the owner's count, kept in the state file */
	bool adopted;        /* its processes are not our children */

	/* The libvirt driver: the domain, while vmd follows it. */
	int driver; /* enum driver, of this boot */
	struct lv_dom *dom;
	bool dom_running; /* active, as far as vmd knows */
	bool link_down;   /* libvirtd is away */
};


#define LOG_CHECK_USEC (5 * USEC_PER_SEC)


void vm_set_state(struct vm *vm, enum vm_state s);
_printf_(3, 4) void vm_set_reason(struct vm *vm, enum vm_exit_reason r, const char *fmt, ...);
int vm_timer_arm(struct vm *vm, int kind, usec_t when);
/* The boot's main part is gone (or going): stop the rest, wait for it. */
void vm_begin_teardown(struct vm *vm);
void vm_became_ready(struct vm *vm);
/* Data from the console and from io.vmd.notify. */
void vm_console_feed(struct vm *vm, const char *buf, size_t n);
void vm_notify_feed(struct vm *vm, const char *buf, size_t n);
/* Follows a process named in a state file (a virtiofsd libvirt runs). */
int vm_adopt_share(struct vm *vm, struct vm_share *s, const struct proc_id *id);
void vm_forget_share(struct vm *vm, struct vm_share *s);
int vm_open_log(struct vm *vm);
int vm_lock_run_dir(struct vm *vm, bool sweep);
int vm_plan_images(struct vm *vm);
int vm_plan_shares(struct vm *vm);
void vm_cleanup_files(struct vm *vm);
/* What an adoption knows without starting anything: this boot's log
 * offset, its images and shares (key directories prepared again). */
int vm_adopt_plan(struct vm *vm);
/* An adopted VM runs on, ready, with st's times and restart count. */
void vm_adopted(struct vm *vm, const struct vmstate *st);

/* vm-libvirt.c: the libvirt driver's part of each operation. */
int vmlv_start(struct vm *vm);
void vmlv_destroy(struct vm *vm);
int vmlv_stop(struct vm *vm);
/* Whether libvirt says the domain still runs (false also if unknown). */
bool vmlv_running(struct vm *vm);
void vmlv_ready(struct vm *vm);
int vmlv_adopt(struct vm *vm, struct lv_conn *c, const char *domain, const struct vmstate *st);
void vmlv_release(struct vm *vm);
