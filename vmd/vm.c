/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lifecycle of one VM: the state machine, its timers, exit reasons and
 * teardown. What runs the VM is a driver's (driver.h); what a boot needs
 * on disk is the plan's (plan.c). */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

#include "log.h"
#include "plan.h"
#include "guestconf.h"
#include "vm.h"

/* How long children get between SIGTERM and SIGKILL. */
#define KILL_GRACE_USEC (5 * USEC_PER_SEC)
/* How often the log's size is checked: QEMU and virtiofsd write to it
 * directly, not only vmd. */
#define LOG_CHECK_USEC (5 * USEC_PER_SEC)

enum vm_timer { TIMER_NONE, TIMER_READY, TIMER_POWERDOWN, TIMER_TERM, TIMER_TEARDOWN };

struct vm {
	struct loop *loop;
	const struct host_config *host;
	struct vm_options opts;
	struct vm_def *def;
	const struct vm_callbacks *cb;
	void *userdata;

	enum vm_state state;
	bool stop_requested;
	bool stop_forced;
	bool tearing_down;
	bool prepared; /* the plan is ready, no process started yet */
	bool adopted;  /* its processes are not our children */
	enum vm_exit_reason reason;
	char *detail;
	char *last_exit; /* the owner's, for the state file (plan.last_exit) */

	char *log_path;
	struct vmlog log;
	uint64_t log_offset; /* where this boot's output starts */
	struct vm_plan plan;

	/* The driver of this boot, and its state (NULL: no boot). */
	const struct vm_driver *drv_ops;
	struct drv_vm *drv;
	struct drv_events ev;

	char notify_buf[512];
	int exit_status; /* EXIT_STATUS= of this boot, or -1 */
	size_t notify_len;

	struct loop_source *timer;
	enum vm_timer timer_kind;
	/* A virtiofsd that exited cleanly: blamed only if the main part does
	 * not end right after it (see on_share_exit). */
	struct loop_source *share_timer;
	char *share_detail;
	struct loop_source *log_timer;

	usec_t t_ready;
	usec_t t_down; /* when the unit started to go down */

	/* The image's unpack helper (opts.async_unpack), which the boot waits
	 * for in VM_PREPARING: its stdout and stderr, read on the loop. */
	struct child unpack;
	int unpack_fd;
	struct loop_source *unpack_src;
	char unpack_buf[1024]; /* a line not ended yet */
	size_t unpack_len;
	char *unpack_error;    /* its first line of complaint */
	unsigned unpack_errors;
	bool unpack_did;       /* it said it unpacked (rather than found it cached) */
	usec_t unpack_t0;
	unsigned unpack_runs; /* helpers run for this start */
};

const char *const vm_state_names[] = {
	[VM_STOPPED] = "stopped",
	[VM_PREPARING] = "preparing",
	[VM_STARTING_SHARES] = "starting-shares",
	[VM_BOOTING] = "booting",
	[VM_RUNNING] = "running",
	[VM_STOPPING] = "stopping",
	[VM_BACKOFF] = "backoff",
	[VM_FAILED] = "failed",
	NULL,
};

const char *const vm_exit_reason_names[] = {
	[VM_EXIT_NONE] = "none",
	[VM_EXIT_POWEROFF] = "poweroff",
	[VM_EXIT_REBOOT] = "reboot",
	[VM_EXIT_STOPPED] = "stopped",
	[VM_EXIT_CRASHED] = "crashed",
	[VM_EXIT_SHARE_FAILED] = "share-failed",
	[VM_EXIT_READY_TIMEOUT] = "ready-timeout",
	[VM_EXIT_START_FAILED] = "start-failed",
	[VM_EXIT_FAILURE] = "failure",
	NULL,
};

static bool is_idle(const struct vm *vm)
{
	return vm->state == VM_STOPPED || vm->state == VM_BACKOFF || vm->state == VM_FAILED;
}

static void set_state(struct vm *vm, enum vm_state s)
{
	enum vm_state old = vm->state;

	if (old == s)
		return;
	vm->state = s;
	log_info("%s: %s -> %s", vm->def->name, vm_state_names[old], vm_state_names[s]);
	if (vm->cb->state_changed)
		vm->cb->state_changed(vm, old, vm->userdata);
}

_printf_(3, 4) static void set_reason(struct vm *vm, enum vm_exit_reason r, const char *fmt, ...)
{
	va_list ap;

	/* The first cause wins: a QEMU exit after a virtiofsd death is a
	 * consequence, not the reason. */
	if (vm->reason != VM_EXIT_NONE)
		return;
	vm->reason = r;
	vm->detail = mfree(vm->detail);
	va_start(ap, fmt);
	if (vasprintf(&vm->detail, fmt, ap) < 0)
		vm->detail = NULL;
	va_end(ap);
}

/* The definition's own timeouts win over the host's. */
static uint32_t ready_timeout_s(const struct vm *vm)
{
	return vm->def->ready_timeout_s ? vm->def->ready_timeout_s : vm->host->ready_timeout_s;
}

static uint32_t stop_timeout_s(const struct vm *vm)
{
	return vm->def->stop_timeout_s ? vm->def->stop_timeout_s : vm->host->stop_timeout_s;
}

static void timer_arm(struct vm *vm, enum vm_timer kind, usec_t when)
{
	vm->timer_kind = kind;
	loop_timer_set(vm->timer, when);
}

/* The part of the boot whose end ends the VM: QEMU, or the domain. */
static bool main_running(const struct vm *vm)
{
	return vm->drv && vm->drv_ops->running(vm->drv);
}

static bool any_child_running(const struct vm *vm)
{
	if (main_running(vm) || vm->unpack.running)
		return true;
	for (size_t i = 0; i < vm->plan.n_shares; i++)
		if (vm->plan.shares[i].proc.running)
			return true;
	return false;
}

static void destroy(struct vm *vm, enum drv_kill how)
{
	if (vm->drv)
		vm->drv_ops->destroy(vm->drv, how);
}

static void signal_shares(struct vm *vm, int sig)
{
	for (size_t i = 0; i < vm->plan.n_shares; i++)
		child_signal(&vm->plan.shares[i].proc, sig);
}

static void unpack_close_output(struct vm *vm)
{
	loop_source_freep(&vm->unpack_src);
	vm->unpack_fd = safe_close(vm->unpack_fd);
	vm->unpack_len = 0;
}

/* There is nothing to stop gracefully in an unpack: a partial entry is
 * never trusted, and removed by the next one. */
static void unpack_kill(struct vm *vm, bool wait)
{
	if (!vm->unpack.running)
		return;
	/* Its chrooted writer too, which would die with it anyway
	 * (PDEATHSIG): the helper leads its own process group (spawn() gives
	 * it a session), and its pid is not reused before it is reaped. */
	(void)kill(-vm->unpack.pid, SIGKILL);
	if (!wait) {
		child_signal(&vm->unpack, SIGKILL);
		return;
	}
	child_kill_wait(&vm->unpack, SIGKILL, 0);
	unpack_close_output(vm);
}

/* Synchronously: only for undoing a bring-up and for vm_free(). */
static void kill_wait_all(struct vm *vm)
{
	unpack_kill(vm, true);
	destroy(vm, DRV_KILL_WAIT);
	for (size_t i = 0; i < vm->plan.n_shares; i++)
		child_kill_wait(&vm->plan.shares[i].proc, SIGKILL, 0);
}

/* Everything of this boot is gone once this returns; callers have made
 * sure no child is running. */
static void cleanup_boot(struct vm *vm)
{
	vm->prepared = false;
	if (vm->drv)
		vm->drv_ops->release(vm->drv);
	vm->drv = NULL;
	vm->notify_len = 0;
	plan_clear(&vm->plan);
	vmlog_close(&vm->log);
	timer_arm(vm, TIMER_NONE, 0);
	loop_timer_set(vm->share_timer, 0);
	loop_timer_set(vm->log_timer, 0);
	vm->share_detail = mfree(vm->share_detail);
	unpack_close_output(vm);
	vm->unpack_error = mfree(vm->unpack_error);
}

static void finish_teardown(struct vm *vm)
{
	enum vm_exit_reason reason;
	_cleanup_free_ char *detail = NULL;

	if (any_child_running(vm))
		return;
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "stopped: %s%s%s", vm_exit_reason_names[vm->reason],
			     vm->detail ? ": " : "", vm->detail ? vm->detail : "");
	/* An adopted VM's lock was held by its QEMU, which is gone now. */
	if (vm->plan.lock_fd < 0 && plan_lock(&vm->plan, false) < 0)
		log_warning("%s: %s is still locked; leaving it", vm->def->name, vm->plan.dir);
	vm->adopted = false;
	cleanup_boot(vm);
	reason = vm->reason;
	detail = TAKE_PTR(vm->detail);
	vm->reason = VM_EXIT_NONE;
	vm->plan.ready = false;
	vm->tearing_down = false;
	vm->stop_requested = false;
	vm->stop_forced = false;
	set_state(vm, VM_STOPPED);
	if (vm->cb->exited)
		vm->cb->exited(vm, reason, detail, vm->userdata);
}

/* The boot's main part is gone (or going): stop the rest, wait for it. */
static void begin_teardown(struct vm *vm)
{
	if (!vm->t_down)
		vm->t_down = now_usec();
	if (vm->tearing_down) {
		finish_teardown(vm);
		return;
	}
	vm->tearing_down = true;
	if (vm->drv)
		vm->drv_ops->disconnect(vm->drv);
	if (vm->state != VM_STOPPING)
		set_state(vm, VM_STOPPING);
	signal_shares(vm, SIGTERM);
	destroy(vm, DRV_TERM);
	timer_arm(vm, TIMER_TEARDOWN, now_usec() + KILL_GRACE_USEC);
	finish_teardown(vm);
}

/* The exit reason: what vmd asked for comes first, then what the guest
 * did, then what the hypervisor says. */
static void on_ended(void *userdata, enum drv_end end, const char *detail, const char *early)
{
	struct vm *vm = userdata;

	if (!vm->t_down)
		vm->t_down = now_usec();
	if (vm->stop_requested && end != DRV_END_CRASHED && end != DRV_END_GONE)
		set_reason(vm, VM_EXIT_STOPPED, "stopped by request");
	else if (end == DRV_END_POWEROFF && vm->exit_status > 0)
		set_reason(vm, VM_EXIT_FAILURE, "the image's entrypoint exited with status %d", vm->exit_status);
	else if (end == DRV_END_POWEROFF && vm->exit_status == 0)
		set_reason(vm, VM_EXIT_POWEROFF, "the image's entrypoint exited with status 0");
	else if (end == DRV_END_POWEROFF && vm->def->image)
		/* The image init powers off without a status only when it
		 * failed before the entrypoint ran (the console says why). */
		set_reason(vm, VM_EXIT_FAILURE, "the image init powered off without an exit status (see the log)");
	else if (end == DRV_END_POWEROFF)
		set_reason(vm, VM_EXIT_POWEROFF, "the guest powered off");
	else if (end == DRV_END_REBOOT)
		set_reason(vm, VM_EXIT_REBOOT, "%s", detail);
	else if (end == DRV_END_PANIC)
		set_reason(vm, VM_EXIT_CRASHED, "the guest kernel panicked");
	else if (!vm->plan.ready && vm->state == VM_BOOTING)
		set_reason(vm, VM_EXIT_START_FAILED, "%s", early);
	else if (end == DRV_END_SHUTDOWN)
		set_reason(vm, VM_EXIT_POWEROFF, "%s", detail);
	else
		set_reason(vm, VM_EXIT_CRASHED, "%s", detail);
	begin_teardown(vm);
}

static void on_share_exit(struct child *c, const siginfo_t *si, void *userdata)
{
	struct vm *vm = userdata;
	struct vm_share *sh = container_of(c, struct vm_share, proc);
	char buf[128];

	if (vm->tearing_down) {
		finish_teardown(vm);
		return;
	}
	if (vm->stop_forced) {
		/* A forced stop kills everything at once. */
		set_reason(vm, VM_EXIT_STOPPED, "stopped by request");
		begin_teardown(vm);
		return;
	}
	child_describe_status(si, buf, sizeof(buf));
	/* virtiofsd exits with 0 when its vhost-user peer goes away, which
	 * happens while QEMU exits, possibly before QEMU's exit is visible
	 * here. Give QEMU a moment to explain itself. So does a virtiofsd
	 * whose status we cannot see (adopted, not our child), and any during
	 * a stop we asked for. Every virtiofsd of the VM sees QEMU go at
	 * once: while one such grace runs, the others just join it. */
	if (main_running(vm) &&
	    (vm->share_detail || !si || (si->si_code == CLD_EXITED && si->si_status == 0) || vm->stop_requested)) {
		if (!vm->t_down)
			vm->t_down = now_usec();
		if (!vm->share_detail) {
			vm->share_detail = xasprintf("virtiofsd for %s %s", sh->tag, buf);
			loop_timer_set(vm->share_timer, now_usec() + USEC_PER_SEC);
		}
		return;
	}
	/* A dead virtiofsd leaves the guest hung on every access to the
	 * share, and vhost-user does not reconnect: stop the whole VM. */
	set_reason(vm, VM_EXIT_SHARE_FAILED, "virtiofsd for %s %s", sh->tag, buf);
	log_error("%s: virtiofsd for %s %s; stopping the VM", vm->def->name, sh->tag, buf);
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "virtiofsd for %s %s", sh->tag, buf);
	begin_teardown(vm);
}

static void on_share_timer(struct loop_source *s, void *userdata)
{
	struct vm *vm = userdata;

	(void)s;
	if (vm->tearing_down || !vm->share_detail)
		return;
	/* A hypervisor whose end vmd learns late (libvirt) gets longer. */
	if (main_running(vm) && vm->drv_ops->hold_share_blame &&
	    vm->drv_ops->hold_share_blame(vm->drv, now_usec() - vm->t_down)) {
		loop_timer_set(vm->share_timer, now_usec() + USEC_PER_SEC);
		return;
	}
	set_reason(vm, VM_EXIT_SHARE_FAILED, "%s", vm->share_detail);
	log_error("%s: %s; stopping the VM", vm->def->name, vm->share_detail);
	begin_teardown(vm);
}

static void on_timer(struct loop_source *s, void *userdata)
{
	struct vm *vm = userdata;
	enum vm_timer kind = vm->timer_kind;

	(void)s;
	vm->timer_kind = TIMER_NONE;
	switch (kind) {
	case TIMER_NONE:
		break;
	case TIMER_READY:
		if (vm->plan.ready)
			return;
		set_reason(vm, VM_EXIT_READY_TIMEOUT, "no READY=1 from the guest within %u s", ready_timeout_s(vm));
		log_error("%s: no READY=1 from the guest within %u s; stopping it", vm->def->name,
			  ready_timeout_s(vm));
		begin_teardown(vm);
		break;
	case TIMER_POWERDOWN:
		log_warning("%s: the guest did not power off within %u s; %s", vm->def->name, stop_timeout_s(vm),
			    vm->drv_ops ? vm->drv_ops->term_action : "ending it");
		destroy(vm, DRV_TERM);
		timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
		break;
	case TIMER_TERM:
	case TIMER_TEARDOWN:
		if (main_running(vm) && vm->drv_ops->kill_message)
			log_warning("%s: %s", vm->def->name, vm->drv_ops->kill_message);
		destroy(vm, DRV_KILL);
		signal_shares(vm, SIGKILL);
		break;
	}
}

static void on_log_timer(struct loop_source *s, void *userdata)
{
	struct vm *vm = userdata;

	if (vm->log.fd < 0)
		return;
	vmlog_check(&vm->log);
	loop_timer_set(s, now_usec() + LOG_CHECK_USEC);
}

static void on_start_failed(void *userdata, const char *detail)
{
	struct vm *vm = userdata;

	if (vm->tearing_down)
		return;
	set_reason(vm, VM_EXIT_START_FAILED, "%s", detail);
	begin_teardown(vm);
}

static void on_stop_failed(void *userdata)
{
	struct vm *vm = userdata;

	destroy(vm, DRV_TERM);
	timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
}

/* The hypervisor's manager is back: what was asked of it meanwhile. */
static void on_link(void *userdata, bool up)
{
	struct vm *vm = userdata;

	if (!up)
		return;
	if (vm->tearing_down || vm->stop_forced || (vm->stop_requested && !vm->plan.ready))
		destroy(vm, DRV_KILL);
	else if (vm->stop_requested && vm->drv_ops->stop(vm->drv) < 0)
		destroy(vm, DRV_KILL);
}

static void on_console(void *userdata, const char *buf, size_t n)
{
	struct vm *vm = userdata;

	vmlog_write(&vm->log, buf, n);
	if (vm->cb->console)
		vm->cb->console(vm, buf, n, vm->userdata);
}

static void became_ready(struct vm *vm)
{
	/* Too late: we are already taking it down. */
	if (vm->plan.ready || vm->stop_requested || vm->tearing_down)
		return;
	vm->t_ready = now_usec();
	vm->plan.ready = true;
	vm->plan.boot_usec = vm->t_ready - vm->plan.t_start;
	if (vm->timer_kind == TIMER_READY)
		timer_arm(vm, TIMER_NONE, 0);
	vmlog_printf(&vm->log, "ready after %.2f s", (double)vm->plan.boot_usec / USEC_PER_SEC);
	vm->drv_ops->ready(vm->drv);
	set_state(vm, VM_RUNNING);
	if (vm->cb->ready)
		vm->cb->ready(vm, vm->userdata);
}

/* EXIT_STATUS=N (sd_notify(3)): 0..255, from the guest, so checked. */
static void note_exit_status(struct vm *vm, const char *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (!*v || *end || errno || n > 255 || *v == '-' || *v == '+') {
		log_warning("%s: ignoring a bad EXIT_STATUS=%.20s from the guest", vm->def->name, v);
		return;
	}
	vm->exit_status = (int)n;
	log_info("%s: the guest reports exit status %d", vm->def->name, vm->exit_status);
}

int vm_exit_status(const struct vm *vm)
{
	return vm->exit_status;
}

/* sd_notify format: newline-separated VAR=VALUE. */
static void on_notify(void *userdata, const char *buf, size_t n)
{
	struct vm *vm = userdata;

	while (n > 0) {
		size_t k = sizeof(vm->notify_buf) - 1 - vm->notify_len;
		char *nl;

		if (k > n)
			k = n;
		memcpy(vm->notify_buf + vm->notify_len, buf, k);
		vm->notify_len += k;
		vm->notify_buf[vm->notify_len] = 0;
		buf += k;
		n -= k;
		while ((nl = strchr(vm->notify_buf, '\n'))) {
			size_t used = (size_t)(nl + 1 - vm->notify_buf);

			*nl = 0;
			if (streq(vm->notify_buf, "READY=1"))
				became_ready(vm);
			else if (startswith(vm->notify_buf, "EXIT_STATUS="))
				note_exit_status(vm, vm->notify_buf + 12);
			else if (startswith(vm->notify_buf, "STATUS="))
				log_info("%s: status: %.200s", vm->def->name, vm->notify_buf + 7);
			memmove(vm->notify_buf, nl + 1, vm->notify_len - used + 1);
			vm->notify_len -= used;
		}
		/* A line longer than the buffer is garbage: drop it. */
		if (vm->notify_len >= sizeof(vm->notify_buf) - 1)
			vm->notify_len = 0;
	}
}

static int open_log(struct vm *vm)
{
	int r = mkdir_p(vm->host->log_dir, 0750);

	return r < 0 ? r : vmlog_open(&vm->log, vm->log_path, vm->host->log_max_bytes);
}

/* Everything before the first process: the lock, disks, the log, the
 * closure check and the kernel command line. The daemon does this during a
 * restart's backoff (ahead), so that the restart itself only starts
 * processes. -EAGAIN (opts.async_unpack): the image must be unpacked (or
 * the cache is busy) first; the lock and the log are kept for that. */
static int prepare(struct vm *vm, bool ahead)
{
	int r;

	r = plan_lock(&vm->plan, true);
	if (r == -EBUSY)
		return log_error_errno(r, "%s: already running (%s is locked by another vmd or its QEMU)",
				       vm->def->name, vm->plan.dir);
	if (r < 0)
		return log_error_errno(r, "%s: preparing %s: %m", vm->def->name, vm->plan.dir);
	r = plan_sweep_disks(&vm->plan);
	if (r < 0)
		return log_error_errno(r, "%s: removing stale disks in %s: %m", vm->def->name, vm->plan.disk_dir);
	r = open_log(vm);
	if (r == -EBADFD)
		return log_error_errno(r, "%s: %s: not a regular file", vm->def->name, vm->log_path);
	if (r < 0)
		return log_error_errno(r, "%s: opening the log %s: %m", vm->def->name, vm->log_path);
	vm->log_offset = vmlog_offset(&vm->log);
	vm->exit_status = -1;
	r = vm->opts.async_unpack && vm->def->image ? plan_take_image(&vm->plan) : 0;
	if (r == -EAGAIN && ahead)
		return r;
	vmlog_printf(&vm->log, "starting %s from %s", vm->def->name, vm->def->system ? vm->def->system : vm->def->image);
	if (r < 0)
		return r;
	r = plan_prepare(&vm->plan);
	if (r < 0)
		return r;
	vm->prepared = true;
	return 0;
}

int vm_prepare(struct vm *vm)
{
	int r;

	if (vm->prepared)
		return 0;
	if (!is_idle(vm))
		return -EBUSY;
	r = prepare(vm, true);
	/* The start unpacks it, in a helper. */
	if (r == -EAGAIN && vm->opts.async_unpack && vm->def->image) {
		cleanup_boot(vm);
		return 0;
	}
	if (r < 0) {
		if (vm->log.fd >= 0)
			vmlog_printf(&vm->log, "start failed: %s", strerror(-r));
		cleanup_boot(vm);
	}
	return r;
}

void vm_unprepare(struct vm *vm)
{
	if (vm->prepared && !any_child_running(vm))
		cleanup_boot(vm);
}

static int new_boot(struct vm *vm, const struct vm_driver *ops)
{
	vm->drv_ops = ops;
	return ops->new(&vm->plan, &vm->ev, &vm->drv);
}

static void undo_start(struct vm *vm)
{
	kill_wait_all(vm);
	cleanup_boot(vm);
	vm->reason = VM_EXIT_NONE;
	vm->detail = mfree(vm->detail);
	set_state(vm, VM_STOPPED);
}

/* A prepared boot: its processes. */
static int boot(struct vm *vm)
{
	int r = new_boot(vm, vm->opts.driver ? vm->opts.driver : driver_for(def_driver(vm->def, vm->host->driver)));

	if (r == 0 && vm->drv_ops->start_shares) {
		set_state(vm, VM_STARTING_SHARES);
		r = vm->drv_ops->start_shares(vm->drv);
	}
	if (r == 0) {
		set_state(vm, VM_BOOTING);
		r = vm->drv_ops->start(vm->drv);
	}
	if (r < 0)
		return r;
	vm->prepared = false;
	timer_arm(vm, TIMER_READY, vm->plan.t_start + (usec_t)ready_timeout_s(vm) * USEC_PER_SEC);
	loop_timer_set(vm->log_timer, now_usec() + LOG_CHECK_USEC);
	return 0;
}

/* A start that failed after vm_start() returned: reported by exited(). */
static void start_failed_later(struct vm *vm, const char *detail)
{
	vmlog_printf(&vm->log, "start failed: %s", detail);
	kill_wait_all(vm);
	if (!vm->t_down)
		vm->t_down = now_usec();
	set_reason(vm, VM_EXIT_START_FAILED, "%s", detail);
	finish_teardown(vm);
}

/* The helper's lines: "unpacked KEY" or "cached KEY" on success, else
 * why it failed, which goes to the logs. */
static void unpack_line(struct vm *vm, const char *line)
{
	if (!*line)
		return;
	if (startswith(line, "unpacked sha256-")) {
		vm->unpack_did = true;
		return;
	}
	if (startswith(line, "cached sha256-"))
		return;
	vmlog_printf(&vm->log, "image unpack: %s", line);
	log_error("%s: image unpack: %s", vm->def->name, line);
	if (!vm->unpack_error)
		vm->unpack_error = strdup(line);
	vm->unpack_errors++;
}

/* Reads what is there (the fd is non-blocking); at its end, or with a
 * final flush, the last line too. */
static void unpack_read(struct vm *vm, bool final)
{
	for (;;) {
		size_t room = sizeof(vm->unpack_buf) - 1 - vm->unpack_len;
		ssize_t k = read(vm->unpack_fd, vm->unpack_buf + vm->unpack_len, room);
		char *line, *nl;

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0 || errno != EAGAIN || final) {
				vm->unpack_buf[vm->unpack_len] = 0;
				unpack_line(vm, vm->unpack_buf);
				unpack_close_output(vm);
			}
			return;
		}
		vm->unpack_len += (size_t)k;
		vm->unpack_buf[vm->unpack_len] = 0;
		for (line = vm->unpack_buf; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = 0;
			unpack_line(vm, line);
		}
		vm->unpack_len -= (size_t)(line - vm->unpack_buf);
		memmove(vm->unpack_buf, line, vm->unpack_len);
		/* A line longer than the buffer: taken in pieces. */
		if (vm->unpack_len == sizeof(vm->unpack_buf) - 1) {
			unpack_line(vm, vm->unpack_buf);
			vm->unpack_len = 0;
		}
	}
}

static void on_unpack_output(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	(void)s;
	(void)fd;
	(void)revents;
	unpack_read(userdata, false);
}

static int unpack_start(struct vm *vm);

/* The image is there (or the cache was busy): the rest of the start. */
#define UNPACK_RUNS_MAX 4

static void start_after_unpack(struct vm *vm)
{
	int r = plan_take_image(&vm->plan);

	/* Busy again (another VM's unpack), or removed meanwhile: again, but
	 * not forever (an entry the helper makes and the take never finds
	 * usable must not unpack in a loop). */
	if (r == -EAGAIN && vm->unpack_runs >= UNPACK_RUNS_MAX) {
		start_failed_later(vm, "the image's cache entry is still not usable after unpacking it "
				       "(see the log)");
		return;
	}
	if (r == -EAGAIN)
		r = unpack_start(vm);
	if (r == 0 && vm->unpack.running)
		return;
	if (r == 0)
		r = plan_prepare(&vm->plan);
	if (r == 0) {
		vm->prepared = true;
		/* The boot counts from here: the unpack was not the guest's. */
		vm->plan.t_start = now_usec();
		vm->plan.started_at = now_realtime_usec();
		r = boot(vm);
	}
	if (r < 0)
		start_failed_later(vm, strerror(-r));
}

static void on_unpack_exit(struct child *c, const siginfo_t *si, void *userdata)
{
	struct vm *vm = userdata;
	usec_t took = now_usec() - vm->unpack_t0;
	_cleanup_free_ char *detail = NULL;
	char buf[128];

	(void)c;
	if (vm->unpack_fd >= 0)
		unpack_read(vm, true);
	if (vm->stop_requested) {
		vmlog_printf(&vm->log, "image unpack stopped");
		if (!vm->t_down)
			vm->t_down = now_usec();
		set_reason(vm, VM_EXIT_STOPPED, "stopped by request (while unpacking the image)");
		finish_teardown(vm);
		return;
	}
	if (si && si->si_code == CLD_EXITED && si->si_status == 0) {
		log_debug("%s: image %s: the helper %s it in %.2f s", vm->def->name, vm->def->image,
			  vm->unpack_did ? "unpacked" : "found", (double)took / USEC_PER_SEC);
		if (vm->unpack_did)
			vm->plan.image_unpack_usec += took;
		start_after_unpack(vm);
		return;
	}
	if (vm->unpack_error)
		detail = xasprintf("unpacking the image: %s%s", vm->unpack_error,
				   vm->unpack_errors > 1 ? " (and more: see the log)" : "");
	else
		detail = xasprintf("the image unpack helper %s", child_describe_status(si, buf, sizeof(buf)));
	start_failed_later(vm, detail ? detail : "unpacking the image failed");
}

/* The image is not unpacked (or the cache is busy): a helper does it
 * while the loop goes on; the start goes on when it exits. */
static int unpack_start(struct vm *vm)
{
#ifdef __SANITIZE_ADDRESS__
	/* LeakSanitizer stops the world with ptrace(), which the filter
	 * refuses: the helper of a sanitizer build would fail at its exit. */
	static char *const envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
				      (char *)"ASAN_OPTIONS=detect_leaks=0", NULL };
#else
	static char *const *const envp = NULL;
#endif
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_close_ int rd = -EBADF, wr = -EBADF;
	int p[2], r;

	r = plan_unpack_argv(&vm->plan, &argv);
	if (r < 0)
		return r;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	rd = p[0];
	wr = p[1];
	if (fcntl(rd, F_SETFL, O_NONBLOCK) < 0)
		return -errno;
	struct spawn_opts o = {
		.argv = argv,
		.envp = envp,
		.stdin_fd = -1,
		.stdout_fd = wr,
		.stderr_fd = wr,
		.profile = SANDBOX_UNPACK,
		/* No next daemon adopts an unpack: it starts the VM afresh. */
		.die_with_parent = true,
	};
	vm->unpack_error = mfree(vm->unpack_error);
	vm->unpack_errors = 0;
	vm->unpack_did = false;
	vm->unpack_len = 0;
	r = child_spawn(&vm->unpack, vm->loop, &o, on_unpack_exit, vm);
	if (r < 0)
		return log_error_errno(r, "%s: starting the image unpack helper: %m", vm->def->name);
	r = loop_add_io(vm->loop, rd, EPOLLIN, on_unpack_output, vm, &vm->unpack_src);
	if (r < 0) {
		unpack_kill(vm, true);
		return r;
	}
	vm->unpack_fd = TAKE_FD(rd);
	vm->unpack_t0 = now_usec();
	vm->unpack_runs++;
	log_info("%s: image %s is not in the cache (or the cache is busy): unpacking it in a helper (pid %d)",
		 vm->def->name, vm->def->image, (int)vm->unpack.pid);
	vmlog_printf(&vm->log, "image %s: unpacking it (or waiting for the cache)", vm->def->image);
	return 0;
}

int vm_start(struct vm *vm)
{
	int r;

	if (!is_idle(vm))
		return -EBUSY;
	vm->plan.t_start = now_usec();
	vm->plan.started_at = now_realtime_usec();
	vm->plan.ready = false;
	vm->plan.boot_usec = 0;
	vm->t_down = 0;
	vm->t_ready = 0;
	vm->reason = VM_EXIT_NONE;
	vm->unpack_runs = 0;
	set_state(vm, VM_PREPARING);
	r = vm->prepared ? 0 : prepare(vm, false);
	if (r == -EAGAIN && vm->opts.async_unpack && vm->def->image)
		r = unpack_start(vm);
	else if (r == 0)
		r = boot(vm);
	if (r < 0) {
		if (vm->log.fd >= 0)
			vmlog_printf(&vm->log, "start failed: %s", strerror(-r));
		undo_start(vm);
		return r;
	}
	return 0;
}

int vm_stop(struct vm *vm, bool force)
{
	vm_unprepare(vm);
	if (!any_child_running(vm))
		return 0;
	vm->stop_requested = true;
	if (vm->unpack.running) {
		vm->stop_forced = force;
		set_state(vm, VM_STOPPING);
		unpack_kill(vm, false);
		return 0;
	}
	if (force) {
		vm->stop_forced = true;
		destroy(vm, DRV_KILL);
		signal_shares(vm, SIGKILL);
		return 0;
	}
	if (vm->state == VM_STOPPING)
		return 0;
	set_state(vm, VM_STOPPING);
	/* ACPI powerdown only reaches a guest that is up; before READY, the
	 * hypervisor's own orderly exit is the graceful path. */
	if (vm->plan.ready && main_running(vm) && vm->drv_ops->stop(vm->drv) == 0) {
		timer_arm(vm, TIMER_POWERDOWN, now_usec() + (usec_t)stop_timeout_s(vm) * USEC_PER_SEC);
		return 0;
	}
	destroy(vm, DRV_TERM);
	timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
	return 0;
}

int vm_exec(struct vm *vm, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata)
{
	struct qga *g = vm->drv && !vm->tearing_down ? vm->drv_ops->agent(vm->drv) : NULL;
	_cleanup_strv_free_ char **enter = NULL;

	if (!g)
		return -ENOTCONN;
	/* The agent runs outside an image's root: the image init enters it
	 * (chroot, the image's environment and working directory). */
	if (vm->def->image) {
		if (strv_extend(&enter, IMAGE_INIT_ENTER_PATH) < 0 || strv_extend(&enter, "--enter") < 0 ||
		    strv_extend(&enter, "--") < 0)
			return -ENOMEM;
		for (size_t i = 0; argv[i]; i++)
			if (strv_extend(&enter, argv[i]) < 0)
				return -ENOMEM;
		argv = enter;
	}
	return qga_exec(g, argv, timeout, cb, userdata);
}

void vm_exec_cancel(struct vm *vm, void *userdata)
{
	struct qga *g = vm->drv ? vm->drv_ops->agent(vm->drv) : NULL;

	if (g)
		qga_cancel(g, userdata);
}

int vm_new(struct loop *l, const struct host_config *host, const struct vm_options *opts, struct vm_def *def,
	   const struct vm_callbacks *cb, void *userdata, struct vm **ret)
{
	_cleanup_(vm_freep) struct vm *vm = calloc(1, sizeof(*vm));
	int r;

	if (!vm) {
		def_free(def);
		return -ENOMEM;
	}
	vm->exit_status = -1;
	vm->unpack_fd = -EBADF;
	vm->unpack.pidfd = -EBADF; /* until child_init() */
	vm->loop = l;
	vm->host = host;
	vm->opts = *opts;
	vm->def = def;
	vm->cb = cb;
	vm->userdata = userdata;
	vm->log.fd = -EBADF;
	vm->plan.lock_fd = -EBADF; /* until plan_init(): vm_free() must find nothing to remove */
	vm->ev = (struct drv_events){
		.ended = on_ended,
		.console = on_console,
		.notify = on_notify,
		.start_failed = on_start_failed,
		.stop_failed = on_stop_failed,
		.link = on_link,
		.share_exited = on_share_exit,
		.userdata = vm,
	};
	r = child_init(&vm->unpack, "the image unpack helper");
	if (r < 0)
		return r;
	r = plan_init(&vm->plan, l, host, &vm->opts, def, &vm->log);
	if (r < 0)
		return r;
	vm->log_path = xasprintf("%s/%s.log", host->log_dir, def->name);
	if (!vm->log_path)
		return -ENOMEM;
	r = loop_add_timer(l, 0, on_timer, vm, &vm->timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_share_timer, vm, &vm->share_timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_log_timer, vm, &vm->log_timer);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(vm);
	return 0;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	kill_wait_all(vm);
	cleanup_boot(vm);
	child_done(&vm->unpack);
	loop_source_freep(&vm->timer);
	loop_source_freep(&vm->share_timer);
	loop_source_freep(&vm->log_timer);
	plan_done(&vm->plan);
	def_free(vm->def);
	free(vm->detail);
	free(vm->last_exit);
	free(vm->log_path);
	free(vm);
}

void vm_detach(struct vm *vm)
{
	if (is_idle(vm))
		return;
	/* Not a VM yet: nothing for the next daemon to adopt, nothing left. */
	if (vm->unpack.running) {
		unpack_kill(vm, true);
		cleanup_boot(vm);
		vm->stop_requested = vm->stop_forced = false;
		vm->reason = VM_EXIT_NONE;
		vm->detail = mfree(vm->detail);
		vm->state = VM_STOPPED;
		return;
	}
	/* Its processes run on; the next daemon finds them (discover). */
	if (vm->drv)
		vm->drv_ops->release(vm->drv);
	vm->drv = NULL;
	plan_forget(&vm->plan);
	vmlog_close(&vm->log);
	timer_arm(vm, TIMER_NONE, 0);
	loop_timer_set(vm->share_timer, 0);
	loop_timer_set(vm->log_timer, 0);
	vm->tearing_down = false;
	vm->plan.ready = false;
	vm->state = VM_STOPPED;
}

void vm_set_def(struct vm *vm, struct vm_def *def)
{
	if (!is_idle(vm)) {
		def_free(def);
		return;
	}
	vm_unprepare(vm);
	def_free(vm->def);
	vm->def = def;
	vm->plan.def = def;
}

void vm_set_idle_state(struct vm *vm, enum vm_state state)
{
	if (!is_idle(vm))
		return;
	/* Only a VM about to restart keeps what vm_prepare() made. */
	if (state != VM_BACKOFF)
		vm_unprepare(vm);
	set_state(vm, state);
}

int vm_adopt(struct vm *vm, const struct drv_found *f)
{
	const struct vm_driver *ops = f->driver;
	const char *why = NULL;
	uint64_t now_real;
	int r;

	/* Also one waiting for its hypervisor to come back (backoff, failed). */
	if (!is_idle(vm))
		return -EBUSY;
	vm_unprepare(vm);
	vm->reason = VM_EXIT_NONE;
	/* A vmd run of the same VM holds its run directory. */
	if (!ops->lock_inherited) {
		r = plan_lock(&vm->plan, false);
		if (r < 0)
			return r;
	}
	vm->adopted = true;
	r = open_log(vm);
	if (r == 0) {
		vm->log_offset = vmlog_offset(&vm->log);
		r = plan_adopt(&vm->plan);
	}
	if (r == 0)
		r = new_boot(vm, ops);
	if (r == 0)
		r = ops->adopt(vm->drv, f, &why);
	if (r < 0) {
		log_warning("%s: not adopting %s: %s; stopping it", vm->def->name, f->where, why ? why : strerror(-r));
		if (vm->log.fd >= 0)
			vmlog_printf(&vm->log, "not adopted: %s", why ? why : strerror(-r));
		if (main_running(vm))
			destroy(vm, DRV_KILL_WAIT);
		else
			ops->discard(f);
		kill_wait_all(vm);
		if (vm->plan.lock_fd < 0 && plan_lock(&vm->plan, true) < 0)
			log_warning("%s: %s is still locked; leaving it", vm->def->name, vm->plan.dir);
		vm->adopted = false;
		cleanup_boot(vm);
		return -ESTALE;
	}

	/* The boot's times, carried over on this host's monotonic clock. */
	now_real = now_realtime_usec();
	vm->plan.started_at = f->st.started_at;
	vm->plan.t_start = now_usec() - (now_real > f->st.started_at ? now_real - f->st.started_at : 0);
	vm->plan.boot_usec = f->st.boot_usec;
	vm->plan.ready = true;
	vm_set_history(vm, f->st.restarts, f->st.last_exit);
	vm->t_ready = vm->plan.t_start + f->st.boot_usec;
	set_state(vm, VM_RUNNING);
	loop_timer_set(vm->log_timer, now_usec() + LOG_CHECK_USEC);
	return 0;
}

void vm_set_history(struct vm *vm, uint32_t restarts, const char *last_exit)
{
	vm->plan.restarts = restarts;
	free(vm->last_exit);
	/* Out of memory, the next daemon just does not learn it. */
	vm->last_exit = last_exit ? strdup(last_exit) : NULL;
	vm->plan.last_exit = vm->last_exit;
}

usec_t vm_down_usec(const struct vm *vm)
{
	return vm->t_down;
}

usec_t vm_started_usec(const struct vm *vm)
{
	return main_running(vm) ? vm->plan.t_start : 0;
}

const char *vm_host(const struct vm *vm)
{
	return vm->def->host ? vm->def->host : "local";
}

const char *vm_driver_name(const struct vm *vm)
{
	return main_running(vm) ? vm->drv_ops->name : driver_names[def_driver(vm->def, vm->host->driver)];
}

const char *vm_domain(const struct vm *vm)
{
	return main_running(vm) && vm->drv_ops->domain ? vm->drv_ops->domain(vm->drv) : NULL;
}

int vm_console_write(struct vm *vm, const void *buf, size_t n)
{
	ssize_t k;

	if (!main_running(vm) || !vm->drv_ops->console_write)
		return -ENOTCONN;
	/* n is a control line's worth: it fits. */
	k = vm->drv_ops->console_write(vm->drv, buf, MIN(n, (size_t)1 << 20));
	return (int)k;
}

pid_t vm_pid(const struct vm *vm)
{
	return main_running(vm) && vm->drv_ops->pid ? vm->drv_ops->pid(vm->drv) : 0;
}

const struct vm_def *vm_def(const struct vm *vm)
{
	return vm->def;
}

const char *vm_name(const struct vm *vm)
{
	return vm->def->name;
}

enum vm_state vm_get_state(const struct vm *vm)
{
	return vm->state;
}

bool vm_is_ready(const struct vm *vm)
{
	return vm->plan.ready;
}

usec_t vm_ready_usec(const struct vm *vm)
{
	return vm->t_ready ? vm->t_ready - vm->plan.t_start : 0;
}

const char *vm_log_path(const struct vm *vm)
{
	return vm->log_path;
}

char *vm_log_tail(const struct vm *vm, unsigned n)
{
	return vmlog_tail(vm->log_path, n, vm->log_offset);
}
