/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "cmdline.h"
#include "disk.h"
#include "gcroot.h"
#include "hostnet.h"
#include "keydir.h"
#include "jline.h"
#include "link.h"
#include "log.h"
#include "qemu.h"
#include "qmp.h"
#include "spawn.h"
#include "vm-internal.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* How long a libvirt domain's QEMU may outlive its virtiofsd before the
 * virtiofsd is taken for the cause. */
#define SHARE_BLAME_USEC (5 * USEC_PER_SEC)

/* How long children get between SIGTERM and SIGKILL. */
#define KILL_GRACE_USEC (5 * USEC_PER_SEC)

/* QEMU's fd numbers for its pre-bound sockets, the run-dir lock and the
 * tap queues. */
enum { QFD_QMP = 3, QFD_CONSOLE, QFD_NOTIFY, QFD_AGENT, QFD_LOCK, QFD_TAP };

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
	NULL,
};

void vm_set_state(struct vm *vm, enum vm_state s)
{
	enum vm_state old = vm->state;

	if (old == s)
		return;
	vm->state = s;
	log_info("%s: %s -> %s", vm->def->name, vm_state_names[old], vm_state_names[s]);
	if (vm->cb->state_changed)
		vm->cb->state_changed(vm, old, vm->userdata);
}

void vm_set_reason(struct vm *vm, enum vm_exit_reason r, const char *fmt, ...) _printf_(3, 4);
void vm_set_reason(struct vm *vm, enum vm_exit_reason r, const char *fmt, ...)
{
	va_list ap;

	/* The first cause wins: a QEMU exit after a virtiofsd death is a
	 * consequence, not the reason. */
	if (vm->reason != VM_EXIT_NONE)
		return;
	vm->reason = r;
	free(vm->detail);
	vm->detail = NULL;
	va_start(ap, fmt);
	if (vasprintf(&vm->detail, fmt, ap) < 0)
		vm->detail = NULL;
	va_end(ap);
}

char *vm_run_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/vms/%s", host->run_dir, name);
}

char *vm_disk_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/disks/%s", host->state_dir, name);
}

char *vm_volume_dir(const struct host_config *host, const char *name)
{
	return xasprintf("%s/volumes/%s", host->state_dir, name);
}

int vm_timer_arm(struct vm *vm, int kind, usec_t when)
{
	vm->timer_kind = kind;
	return loop_timer_set(vm->timer, when);
}

static void child_signal(struct vm_child *c, int sig)
{
	if (c->running && c->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0);
}

static void child_forget(struct vm_child *c)
{
	loop_source_freep(&c->src);
	c->pidfd = safe_close(c->pidfd);
	c->running = false;
	c->pid = 0;
}

/* Kills and reaps synchronously; only for undoing a failed bring-up. */
static void child_kill_wait(struct vm_child *c)
{
	if (c->running) {
		struct pollfd p = { .fd = c->pidfd, .events = POLLIN };
		siginfo_t si;
		int r;

		child_signal(c, SIGKILL);
		while ((r = waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED)) < 0 && errno == EINTR)
			;
		/* An adopted process is not our child: wait for its pidfd. */
		if (r < 0 && errno == ECHILD)
			poll(&p, 1, 5000);
	}
	child_forget(c);
}

static const char *describe_status(const siginfo_t *si, char *buf, size_t n)
{
	if (!si)
		snprintf(buf, n, "exited");
	else if (si->si_code == CLD_EXITED)
		snprintf(buf, n, "exited with status %d", si->si_status);
	else
		snprintf(buf, n, "was killed by signal %d (%s)", si->si_status, strsignal(si->si_status));
	return buf;
}

static int write_pidfile(const char *path, pid_t pid)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	char buf[32];
	int n;

	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	return write_all(fd, buf, (size_t)n);
}

/* Locks the run dir. The lock is an flock on the directory itself, and
 * QEMU inherits the locked fd: the VM counts as running as long as either
 * vmd or its QEMU is alive, so a second vmd can never take it over or wipe
 * its sockets. */
int vm_lock_run_dir(struct vm *vm, bool sweep)
{
	usec_t give_up = now_usec() + vm->opts.lock_wait;

	for (int attempt = 0; attempt < 5; attempt++) {
		_cleanup_close_ int fd = -EBADF;
		struct stat a, b;
		int r;

		r = mkdir_p(vm->dir, 0700);
		if (r < 0)
			return r;
		fd = open(vm->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue; /* removed by a predecessor's teardown just now */
		if (fd < 0)
			return -errno;
		while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK)
				return -errno;
			if (now_usec() >= give_up)
				return -EBUSY;
			usleep(50 * 1000);
		}
		/* The previous owner may have removed the directory between our
		 * open() and flock(); then lock the new one. */
		if (fstat(fd, &a) < 0)
			return -errno;
		if (stat(vm->dir, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev || a.st_nlink == 0)
			continue;
		vm->lock_fd = TAKE_FD(fd);
		/* Leftovers of a vmd that died without cleaning up. */
		return sweep ? rm_rf_children(vm->lock_fd) : 0;
	}
	return -EBUSY;
}

/* Everything in the VM's ephemeral disk directory belongs to a boot that is
 * over (we hold the lock): a disk a killed vmd left, or one the definition
 * no longer has. */
static int sweep_disk_dir(struct vm *vm)
{
	_cleanup_close_ int fd = open(vm->disk_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	return rm_rf_children(fd);
}

/* The closure of a running VM is a GC root, so that nix-collect-garbage
 * cannot delete what the guest runs from. A host without Nix has no
 * registry; any other failure is worth a warning, not a failed start. */
static void add_gcroot(struct vm *vm)
{
	_cleanup_free_ char *link = path_join(vm->dir, "system");
	int r = link ? gcroot_add(vm->host->gcroots_dir, link, vm->system) : -ENOMEM;

	if (r == -ENOENT)
		log_debug("%s: no %s, no GC root for %s", vm->def->name, vm->host->gcroots_dir, vm->system);
	else if (r < 0)
		log_warning_errno(r, "%s: registering %s as a GC root in %s: %m", vm->def->name, vm->system,
				  vm->host->gcroots_dir);
}

static void remove_run_dir(struct vm *vm)
{
	_cleanup_free_ char *link = NULL;

	if (vm->lock_fd < 0)
		return;
	link = path_join(vm->dir, "system");
	if (link)
		(void)gcroot_remove(vm->host->gcroots_dir, link);
	rm_rf_children(vm->lock_fd);
	if (rmdir(vm->dir) < 0 && errno != ENOENT)
		log_warning_errno(errno, "%s: removing %s: %m", vm->def->name, vm->dir);
	vm->lock_fd = safe_close(vm->lock_fd);
}

static void remove_images(struct vm *vm)
{
	for (size_t i = 0; i < vm->n_images; i++) {
		if (!vm->images[i].disk->persistent) {
			int r = disk_remove(vm->images[i].path);
			if (r < 0)
				log_warning_errno(r, "%s: removing %s: %m", vm->def->name, vm->images[i].path);
		}
		free(vm->images[i].path);
	}
	free(vm->images);
	vm->images = NULL;
	vm->n_images = 0;
	/* Only the lock holder may touch the directory: another start may be
	 * building a disk in it (an O_TMPFILE that looks like nothing). */
	if (vm->lock_fd >= 0 && rmdir(vm->disk_dir) < 0 && errno != ENOENT && errno != ENOTEMPTY)
		log_warning_errno(errno, "%s: removing %s: %m", vm->def->name, vm->disk_dir);
}

static void free_shares(struct vm *vm)
{
	for (size_t i = 0; i < vm->n_shares; i++) {
		struct vm_share *s = &vm->shares[i];

		child_forget(&s->proc);
		free(s->proc.what);
		free(s->tag);
		free(s->source);
		free(s->socket);
		free(s->pidfile);
	}
	free(vm->shares);
	vm->shares = NULL;
	vm->n_shares = 0;
}

static void close_channels(struct vm *vm)
{
	qmp_freep(&vm->qmp);
	qga_free(vm->qga);
	vm->qga = NULL;
	loop_source_freep(&vm->console_src);
	loop_source_freep(&vm->notify_src);
	vm->console_fd = safe_close(vm->console_fd);
	vm->notify_fd = safe_close(vm->notify_fd);
	vm->notify_len = 0;
}

/* Everything of this boot is gone once this returns; callers have made
 * sure no child is running. */
void vm_cleanup_files(struct vm *vm)
{
	vm->prepared = false;
	vmlv_release(vm);
	close_channels(vm);
	free_shares(vm);
	child_forget(&vm->qemu);
	remove_images(vm);
	remove_run_dir(vm);
	vmlog_close(&vm->log);
	loop_timer_set(vm->timer, 0);
	vm->timer_kind = TIMER_NONE;
	loop_timer_set(vm->share_timer, 0);
	loop_timer_set(vm->log_timer, 0);
	free(vm->share_detail);
	vm->share_detail = NULL;
}

/* The part of the boot whose end ends the VM: QEMU, or the domain. */
static bool main_running(const struct vm *vm)
{
	return vm->qemu.running || vm->dom_running;
}

static bool any_child_running(struct vm *vm)
{
	if (main_running(vm))
		return true;
	for (size_t i = 0; i < vm->n_shares; i++)
		if (vm->shares[i].proc.running)
			return true;
	return false;
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
	if (vm->lock_fd < 0 && vm_lock_run_dir(vm, false) < 0)
		log_warning("%s: %s is still locked; leaving it", vm->def->name, vm->dir);
	vm->adopted = false;
	vm_cleanup_files(vm);
	reason = vm->reason;
	detail = TAKE_PTR(vm->detail);
	vm->reason = VM_EXIT_NONE;
	vm->ready = false;
	vm->tearing_down = false;
	vm->stop_requested = false;
	vm->stop_forced = false;
	vm_set_state(vm, VM_STOPPED);
	if (vm->cb->exited)
		vm->cb->exited(vm, reason, detail, vm->userdata);
}

/* QEMU is gone (or going): stop the rest of the unit and wait for it. */
void vm_begin_teardown(struct vm *vm)
{
	if (!vm->t_down)
		vm->t_down = now_usec();
	if (vm->tearing_down) {
		finish_teardown(vm);
		return;
	}
	vm->tearing_down = true;
	close_channels(vm);
	if (vm->state != VM_STOPPING)
		vm_set_state(vm, VM_STOPPING);
	for (size_t i = 0; i < vm->n_shares; i++)
		child_signal(&vm->shares[i].proc, SIGTERM);
	child_signal(&vm->qemu, SIGTERM);
	if (vm->dom_running)
		vmlv_destroy(vm);
	vm_timer_arm(vm, TIMER_TEARDOWN, now_usec() + KILL_GRACE_USEC);
	finish_teardown(vm);
}

static void on_qemu_exit(struct loop_source *s, const siginfo_t *si, void *userdata)
{
	struct vm *vm = userdata;
	char buf[128];

	(void)s;
	if (!vm->t_down)
		vm->t_down = now_usec();
	child_forget(&vm->qemu);
	describe_status(si, buf, sizeof(buf));
	if (vm->stop_requested)
		vm_set_reason(vm, VM_EXIT_STOPPED, "stopped by request");
	else if (vm->shutdown_reason && streq(vm->shutdown_reason, "guest-shutdown"))
		vm_set_reason(vm, VM_EXIT_POWEROFF, "the guest powered off");
	else if (vm->shutdown_reason && streq(vm->shutdown_reason, "guest-reset"))
		vm_set_reason(vm, VM_EXIT_REBOOT, "the guest rebooted (or its kernel panicked)");
	else if (vm->shutdown_reason && streq(vm->shutdown_reason, "guest-panic"))
		vm_set_reason(vm, VM_EXIT_CRASHED, "the guest kernel panicked");
	else if (!vm->ready && vm->state == VM_BOOTING)
		vm_set_reason(vm, VM_EXIT_START_FAILED, "QEMU %s before the guest was ready", buf);
	else
		vm_set_reason(vm, VM_EXIT_CRASHED, "QEMU %s", buf);
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "QEMU (pid %d) %s", (int)(si ? si->si_pid : 0), buf);
	vm_begin_teardown(vm);
}

static void on_share_exit(struct loop_source *s, const siginfo_t *si, void *userdata)
{
	struct vm *vm = userdata;
	char buf[128];

	for (size_t i = 0; i < vm->n_shares; i++) {
		struct vm_share *sh = &vm->shares[i];

		if (sh->proc.src != s)
			continue;
		child_forget(&sh->proc);
		if (vm->tearing_down)
			break;
		if (vm->stop_forced) {
			/* A forced stop kills everything at once. */
			vm_set_reason(vm, VM_EXIT_STOPPED, "stopped by request");
			vm_begin_teardown(vm);
			return;
		}
		describe_status(si, buf, sizeof(buf));
		/* virtiofsd exits with 0 when its vhost-user peer goes away,
		 * which happens while QEMU exits, possibly before QEMU's exit
		 * is visible here. Give QEMU a moment to explain itself. */
		/* So does a virtiofsd whose status we cannot see (adopted, not
		 * our child), and any during a stop we asked for. */
		/* Every virtiofsd of the VM sees QEMU go at once: while one
		 * such grace runs, the others just join it. */
		if (main_running(vm) &&
		    (vm->share_detail || !si || (si->si_code == CLD_EXITED && si->si_status == 0) ||
		     vm->stop_requested)) {
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
		vm_set_reason(vm, VM_EXIT_SHARE_FAILED, "virtiofsd for %s %s", sh->tag, buf);
		log_error("%s: virtiofsd for %s %s; stopping the VM", vm->def->name, sh->tag, buf);
		if (vm->log.fd >= 0)
			vmlog_printf(&vm->log, "virtiofsd for %s %s", sh->tag, buf);
		vm_begin_teardown(vm);
		return;
	}
	finish_teardown(vm);
}

static void on_timer(struct loop_source *s, void *userdata)
{
	struct vm *vm = userdata;
	int kind = vm->timer_kind;

	(void)s;
	vm->timer_kind = TIMER_NONE;
	switch (kind) {
	case TIMER_READY:
		if (vm->ready)
			return;
		vm_set_reason(vm, VM_EXIT_READY_TIMEOUT, "no READY=1 from the guest within %u s",
			   vm->host->ready_timeout_s);
		log_error("%s: no READY=1 from the guest within %u s; stopping it", vm->def->name,
			  vm->host->ready_timeout_s);
		vm_begin_teardown(vm);
		break;
	case TIMER_POWERDOWN:
		log_warning("%s: the guest did not power off within %u s; %s", vm->def->name,
			    vm->host->stop_timeout_s, vm->dom_running ? "destroying the domain" : "sending SIGTERM to QEMU");
		child_signal(&vm->qemu, SIGTERM);
		if (vm->dom_running)
			vmlv_destroy(vm);
		vm_timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
		break;
	case TIMER_TERM:
	case TIMER_TEARDOWN:
		if (vm->qemu.running)
			log_warning("%s: QEMU ignored SIGTERM; killing it", vm->def->name);
		/* Again: libvirtd may have been away the first time. */
		if (vm->dom_running)
			vmlv_destroy(vm);
		child_signal(&vm->qemu, SIGKILL);
		for (size_t i = 0; i < vm->n_shares; i++)
			child_signal(&vm->shares[i].proc, SIGKILL);
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

static void on_share_timer(struct loop_source *s, void *userdata)
{
	struct vm *vm = userdata;

	(void)s;
	if (vm->tearing_down || !vm->share_detail)
		return;
	/* With libvirt, QEMU's exit is not ours to see: its virtiofsd go
	 * while it exits, and the domain's end comes seconds later when
	 * QEMU is slow to die. Blame the share only once QEMU has outlived it
	 * by SHARE_BLAME_USEC, and not at all while libvirt says the domain
	 * is going (unless that takes for ever). */
	if (vm->dom_running) {
		usec_t since = now_usec() - vm->t_down;

		if (vmlv_running(vm) ? since < SHARE_BLAME_USEC : since < 6 * SHARE_BLAME_USEC) {
			loop_timer_set(vm->share_timer, now_usec() + USEC_PER_SEC);
			return;
		}
	}
	vm_set_reason(vm, VM_EXIT_SHARE_FAILED, "%s", vm->share_detail);
	log_error("%s: %s; stopping the VM", vm->def->name, vm->share_detail);
	vm_begin_teardown(vm);
}

static void on_qmp_event(struct qmp *q, const char *event, json_t *data, void *userdata)
{
	struct vm *vm = userdata;

	(void)q;
	if (streq(event, "SHUTDOWN")) {
		const char *reason = json_string_value(json_object_get(data, "reason"));
		static const char *const known[] = { "guest-shutdown", "guest-reset", "guest-panic" };

		vm->shutdown_reason = "other";
		for (size_t i = 0; reason && i < ELEMENTSOF(known); i++)
			if (streq(reason, known[i]))
				vm->shutdown_reason = known[i];
	}
}

static void on_cont(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	struct vm *vm = userdata;

	(void)q;
	(void)ret;
	/* A closed connection means QEMU is exiting; its exit explains. */
	if (error == -EIO && !vm->tearing_down) {
		vm_set_reason(vm, VM_EXIT_START_FAILED, "QMP cont failed: %s", desc);
		vm_begin_teardown(vm);
	}
}

static void on_console(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct vm *vm = userdata;
	char buf[16384];
	ssize_t n;

	(void)s;
	(void)revents;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_source_freep(&vm->console_src);
		return;
	}
	vm_console_feed(vm, buf, (size_t)n);
}

void vm_console_feed(struct vm *vm, const char *buf, size_t n)
{
	vmlog_write(&vm->log, buf, n);
	if (vm->cb->console)
		vm->cb->console(vm, buf, n, vm->userdata);
}

/* The state file lets the next daemon adopt this VM; only the daemon asks
 * for it (a throwaway run dies with its vmd). */
static void save_state(struct vm *vm)
{
	_cleanup_free_ struct proc_id *shares = calloc(vm->n_shares + 1, sizeof(*shares));
	struct vmstate st = {
		.def = vm->def,
		.shares = shares,
		.n_shares = vm->n_shares,
		.started_at = vm->started_at,
		.boot_usec = vm->ready ? vm->t_ready - vm->t_start : 0,
		.ready = vm->ready,
		.restarts = vm->restarts,
	};
	int r;

	if (!vm->opts.save_state || !shares)
		return;
	r = proc_id_get(vm->qemu.pid, &st.qemu);
	for (size_t i = 0; r == 0 && i < vm->n_shares; i++)
		r = proc_id_get(vm->shares[i].proc.pid, &shares[i]);
	if (r == 0)
		r = vmstate_write(vm->dir, &st);
	if (r < 0)
		log_warning_errno(r, "%s: writing %s/state.json: %m", vm->def->name, vm->dir);
}

void vm_became_ready(struct vm *vm)
{
	/* Too late: we are already taking it down. */
	if (vm->ready || vm->stop_requested || vm->tearing_down)
		return;
	vm->ready = true;
	vm->t_ready = now_usec();
	if (vm->timer_kind == TIMER_READY)
		vm_timer_arm(vm, TIMER_NONE, 0);
	vmlog_printf(&vm->log, "ready after %.2f s", (double)(vm->t_ready - vm->t_start) / USEC_PER_SEC);
	if (vm->dom)
		vmlv_ready(vm);
	else
		save_state(vm);
	vm_set_state(vm, VM_RUNNING);
	if (vm->cb->ready)
		vm->cb->ready(vm, vm->userdata);
}

/* sd_notify format: newline-separated VAR=VALUE. */
static void notify_lines(struct vm *vm)
{
	for (;;) {
		char *nl = strchr(vm->notify_buf, '\n');

		if (!nl)
			break;
		*nl = 0;
		if (streq(vm->notify_buf, "READY=1"))
			vm_became_ready(vm);
		else if (startswith(vm->notify_buf, "STATUS="))
			log_info("%s: status: %.200s", vm->def->name, vm->notify_buf + 7);
		memmove(vm->notify_buf, nl + 1, vm->notify_len - (size_t)(nl + 1 - vm->notify_buf) + 1);
		vm->notify_len -= (size_t)(nl + 1 - vm->notify_buf);
	}
	/* A line longer than the buffer is garbage: drop it. */
	if (vm->notify_len >= sizeof(vm->notify_buf) - 1)
		vm->notify_len = 0;
}

void vm_notify_feed(struct vm *vm, const char *buf, size_t n)
{
	while (n > 0) {
		size_t k = sizeof(vm->notify_buf) - 1 - vm->notify_len;

		if (k > n)
			k = n;
		memcpy(vm->notify_buf + vm->notify_len, buf, k);
		vm->notify_len += k;
		vm->notify_buf[vm->notify_len] = 0;
		buf += k;
		n -= k;
		notify_lines(vm);
	}
}

static void on_notify(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct vm *vm = userdata;
	ssize_t n;

	(void)s;
	(void)revents;
	n = read(fd, vm->notify_buf + vm->notify_len, sizeof(vm->notify_buf) - 1 - vm->notify_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_source_freep(&vm->notify_src);
		return;
	}
	vm->notify_len += (size_t)n;
	vm->notify_buf[vm->notify_len] = 0;
	notify_lines(vm);
}

int vm_open_log(struct vm *vm)
{
	int r;

	r = mkdir_p(vm->host->log_dir, 0750);
	if (r < 0)
		return r;
	return vmlog_open(&vm->log, vm->log_path, vm->host->log_max_bytes);
}

static int add_share(struct vm *vm, const char *tag, char *source, enum virtiofsd_cache cache, bool ro)
{
	struct vm_share *s = &vm->shares[vm->n_shares];

	s->tag = strdup(tag);
	s->source = source;
	s->socket = xasprintf("%s/fs%zu.sock", vm->dir, vm->n_shares);
	s->pidfile = xasprintf("%s/fs%zu.pid", vm->dir, vm->n_shares);
	s->proc.what = xasprintf("virtiofsd for %s", tag);
	s->proc.pidfd = -EBADF;
	s->cache = cache;
	s->read_only = ro;
	vm->n_shares++;
	if (!s->tag || !s->source || !s->socket || !s->pidfile || !s->proc.what)
		return -ENOMEM;
	return 0;
}

/* vmd empties its run and disk directories at every start and stop:
 * nothing a guest keeps may live there. */
static int refuse_swept(struct vm *vm, const char *what, const char *name, const char *path)
{
	_cleanup_free_ char *swept = host_swept_dir(vm->host, path);

	if (!swept)
		return 0;
	return log_error_errno(EINVAL, "%s: %s %s: %s is inside %s, which vmd empties at every start and stop",
			       vm->def->name, what, name, path, swept);
}

/* The store, then keys, then shares. */
int vm_plan_shares(struct vm *vm)
{
	const struct vm_def *d = vm->def;
	int r;

	vm->shares = calloc(1 + d->n_keys + d->n_shares, sizeof(*vm->shares));
	if (!vm->shares)
		return -ENOMEM;
	/* The store never changes under a path: cache everything. */
	r = add_share(vm, "nix-store", strdup(vm->host->store_dir), VIRTIOFSD_CACHE_ALWAYS, true);
	if (r < 0)
		return r;
	for (size_t i = 0; i < d->n_keys; i++) {
		_cleanup_free_ char *tag = def_key_tag(&d->keys[i]);
		char *dir = NULL;

		if (!tag)
			return -ENOMEM;
		/* The default place, under keys_dir, cannot be swept (the
		 * host settings are checked for that). */
		if (d->keys[i].source) {
			r = refuse_swept(vm, "key", d->keys[i].name, d->keys[i].source);
			if (r < 0)
				return r;
		}
		_cleanup_close_ int keyfd = -EBADF;

		r = keydir_prepare(vm->host->keys_dir, d->name,
				   &(struct keydir_key){ .name = d->keys[i].name, .source = d->keys[i].source,
							 .wireguard = d->keys[i].generate == KEY_GENERATE_WIREGUARD },
				   &dir, &keyfd);
		if (r < 0)
			return r;
		/* Its wg0.conf is written before the guest can look. */
		if (d->wireguard && streq(d->keys[i].name, DEF_WIREGUARD_KEY)) {
			r = hostnet_wg_join(vm->opts.net, d, keyfd);
			if (r < 0) {
				free(dir);
				return r;
			}
		}
		/* Keys are small and may be rotated on the host: no caching. */
		r = add_share(vm, tag, dir, VIRTIOFSD_CACHE_NONE, d->keys[i].read_only);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < d->n_shares; i++) {
		_cleanup_free_ char *real = NULL;
		struct stat st;

		/* virtiofsd wants the directory itself, not a symlink to it. */
		real = realpath(d->shares[i].source, NULL);
		if (!real || stat(real, &st) < 0)
			return log_error_errno(errno, "%s: share %s: %s: %m", d->name, d->shares[i].tag,
					       d->shares[i].source);
		if (!S_ISDIR(st.st_mode))
			return log_error_errno(ENOTDIR, "%s: share %s: %s is not a directory", d->name,
					       d->shares[i].tag, d->shares[i].source);
		r = refuse_swept(vm, "share", d->shares[i].tag, real);
		if (r < 0)
			return r;
		r = add_share(vm, d->shares[i].tag, TAKE_PTR(real), VIRTIOFSD_CACHE_AUTO, d->shares[i].read_only);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Where each disk's image lives. */
int vm_plan_images(struct vm *vm)
{
	const struct vm_def *d = vm->def;
	_cleanup_free_ char *voldir = vm_volume_dir(vm->host, d->name);

	if (!voldir)
		return -ENOMEM;
	if (d->n_disks == 0)
		return 0;
	vm->images = calloc(d->n_disks, sizeof(*vm->images));
	if (!vm->images)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_disks; i++) {
		const struct def_disk *dk = &d->disks[i];

		vm->images[i].disk = dk;
		vm->images[i].path = xasprintf("%s/%s.%s", dk->persistent ? voldir : vm->disk_dir, dk->name,
					       dk->base ? "qcow2" : "img");
		if (!vm->images[i].path)
			return -ENOMEM;
		vm->n_images = i + 1;
	}
	return 0;
}

static int create_images(struct vm *vm)
{
	const struct vm_def *d = vm->def;
	int r;

	r = vm_plan_images(vm);
	if (r < 0)
		return r;
	for (size_t i = 0; i < vm->n_images; i++) {
		const struct def_disk *dk = vm->images[i].disk;
		_cleanup_free_ char *why = NULL, *dir = strdup(vm->images[i].path);
		bool created;

		if (!dir)
			return -ENOMEM;
		*strrchr(dir, '/') = 0;
		r = mkdir_p(dir, 0700);
		if (r < 0)
			return log_error_errno(r, "%s: creating %s: %m", d->name, dir);
		if (dk->base) {
			r = refuse_swept(vm, "disk", dk->name, dk->base);
			if (r < 0)
				return r;
			r = disk_create_overlay(vm->images[i].path, dk->base, disk_format_names[dk->base_format],
						dk->size_mib, &why);
			if (r < 0)
				return log_error_errno(r, "%s: creating overlay disk %s on %s at %s: %m%s%s",
						       d->name, dk->name, dk->base, vm->images[i].path,
						       why ? ": " : "", why ? why : "");
			continue;
		}
		r = disk_create(vm->images[i].path, dk->persistent ? DISK_PERSISTENT : DISK_EPHEMERAL,
				dk->size_mib, dk->name, &created, &why);
		if (r < 0)
			return log_error_errno(r, "%s: creating disk %s (%" PRIu64 " MiB) at %s: %m%s%s",
					       d->name, dk->name, dk->size_mib, vm->images[i].path,
					       why ? ": " : "", why ? why : "");
		if (created && dk->persistent)
			log_info("%s: created persistent volume %s", d->name, vm->images[i].path);
	}
	return 0;
}


/* virtiofsd holds an fd per inode it has seen; say so once if it cannot
 * get many (no CAP_SYS_RESOURCE and a low hard limit). */
static void check_nofile(void)
{
	static bool checked;
	struct rlimit cur, want = { VIRTIOFSD_NOFILE, VIRTIOFSD_NOFILE };

	if (checked || getrlimit(RLIMIT_NOFILE, &cur) < 0)
		return;
	checked = true;
	if (cur.rlim_max >= VIRTIOFSD_NOFILE)
		return;
	/* Raising our own hard limit shows whether children can; keep our
	 * soft limit as it was. */
	if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
		want.rlim_cur = cur.rlim_cur;
		setrlimit(RLIMIT_NOFILE, &want);
		return;
	}
	log_info("virtiofsd gets at most %llu open files here (no CAP_SYS_RESOURCE to raise the hard "
		    "limit); a guest that walks a large store may run out",
		    (unsigned long long)cur.rlim_max);
}

static int start_share(struct vm *vm, struct vm_share *s)
{
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_close_ int lfd = -EBADF;
	struct virtiofsd_config c = {
		.binary = vm->opts.virtiofsd,
		.source = s->source,
		.fd = 3,
		.cache = s->cache,
		.read_only = s->read_only,
	};
	int r;

	lfd = unix_listen(s->socket);
	if (lfd < 0)
		return log_error_errno(lfd, "%s: binding %s: %m", vm->def->name, s->socket);
	r = virtiofsd_argv(&c, vm->opts.caps, &argv);
	if (r < 0)
		return r;

	struct spawn_fd fds[] = { { lfd, 3 } };
	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = ELEMENTSOF(fds),
		.stdin_fd = -1,
		.stdout_fd = vm->log.fd,
		.stderr_fd = vm->log.fd,
		.profile = vm->opts.caps->inode_file_handles ? SANDBOX_VIRTIOFSD_FH : SANDBOX_VIRTIOFSD,
		.die_with_parent = vm->opts.die_with_parent,
		/* virtiofsd keeps an fd per inode it has seen. */
		.nofile = VIRTIOFSD_NOFILE,
		.readonly_path = s->read_only ? s->source : NULL,
	};
	r = spawn(&o, &s->proc.pid, &s->proc.pidfd);
	if (r < 0)
		return log_error_errno(r, "%s: cannot start virtiofsd for %s (%s): %m", vm->def->name,
				       s->tag, vm->opts.virtiofsd);
	s->proc.running = true;
	r = loop_add_child(vm->loop, s->proc.pidfd, on_share_exit, vm, &s->proc.src);
	if (r < 0)
		return r;
	write_pidfile(s->pidfile, s->proc.pid);
	return 0;
}

static int read_closure_params(struct vm *vm, char **ret)
{
	_cleanup_free_ char *p = path_join(vm->system, "kernel-params");
	int r;

	if (!p)
		return -ENOMEM;
	r = read_file(p, KERNEL_CMDLINE_MAX, ret, NULL);
	if (r == -ENOENT) {
		*ret = strdup("");
		return *ret ? 0 : -ENOMEM;
	}
	return r;
}

struct channels {
	char *paths[4];
	int lfd[4];
};

static void channels_done(struct channels *c)
{
	for (int i = 0; i < 4; i++) {
		free(c->paths[i]);
		c->lfd[i] = safe_close(c->lfd[i]);
	}
}

/* Takes the four connected channel fds (QMP, console, notify, agent),
 * as a fresh start and an adoption both have them. */
static int attach_channels(struct vm *vm, int fds[4])
{
	int r;

	vm->console_fd = fds[1];
	vm->notify_fd = fds[2];
	r = qmp_new(vm->loop, fds[0], on_qmp_event, NULL, vm, &vm->qmp);
	if (r == 0)
		r = qga_new(vm->loop, fds[3], &vm->qga);
	else
		safe_close(fds[3]);
	if (r == 0)
		r = fd_nonblock(vm->console_fd, true);
	if (r == 0)
		r = fd_nonblock(vm->notify_fd, true);
	if (r == 0)
		r = loop_add_io(vm->loop, vm->console_fd, EPOLLIN, on_console, vm, &vm->console_src);
	if (r == 0)
		r = loop_add_io(vm->loop, vm->notify_fd, EPOLLIN, on_notify, vm, &vm->notify_src);
	return r;
}

/* vmd's copies of a tap's queue fds: closed once QEMU holds them, so
 * the tap lives exactly as long as that QEMU. */
struct taps {
	int fd[TAP_QUEUES_MAX];
	unsigned n;
};

static void taps_done(struct taps *t)
{
	for (unsigned i = 0; i < t->n; i++)
		safe_close(t->fd[i]);
}

static int start_qemu(struct vm *vm, const char *cmdline)
{
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ struct qemu_fs *fs = calloc(vm->n_shares + 1, sizeof(*fs));
	_cleanup_free_ struct qemu_disk *disks = calloc(vm->n_images + 1, sizeof(*disks));
	_cleanup_free_ char *kernel = path_join(vm->system, "kernel");
	_cleanup_free_ char *initrd = path_join(vm->system, "initrd");
	static const char *const chan_names[] = { "qmp", "con", "notify", "qga" };
	_cleanup_(channels_done) struct channels ch = { .lfd = { -EBADF, -EBADF, -EBADF, -EBADF } };
	char **paths = ch.paths;
	int *lfd = ch.lfd;
	_cleanup_free_ char *pidfile = NULL;
	_cleanup_(taps_done) struct taps taps = {};
	int tap_numbers[TAP_QUEUES_MAX];
	unsigned n_taps = 0;
	uint8_t mac[6];
	char mac_str[18];
	int cfd[4], r;

	if (!fs || !disks || !kernel || !initrd)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_shares; i++)
		fs[i] = (struct qemu_fs){ vm->shares[i].tag, vm->shares[i].socket };
	for (size_t i = 0; i < vm->n_images; i++)
		disks[i] = (struct qemu_disk){ vm->images[i].disk->name, vm->images[i].path,
					       !vm->images[i].disk->persistent, vm->images[i].disk->base != NULL };
	for (int i = 0; i < 4; i++) {
		paths[i] = xasprintf("%s/%s.sock", vm->dir, chan_names[i]);
		if (!paths[i])
			return -ENOMEM;
		lfd[i] = unix_listen(paths[i]);
		if (lfd[i] < 0)
			return log_error_errno(lfd[i], "%s: binding %s: %m", vm->def->name, paths[i]);
	}

	if (vm->def->network) {
		if (!vm->opts.net)
			return log_error_errno(ENETDOWN, "%s: the host networks are not up", vm->def->name);
		/* A queue pair per vCPU, as far as the tap allows. */
		n_taps = vm->def->vcpus < TAP_QUEUES_MAX ? vm->def->vcpus : TAP_QUEUES_MAX;
		r = hostnet_tap(vm->opts.net, vm->def, n_taps, taps.fd);
		if (r < 0)
			return r;
		taps.n = n_taps;
		for (unsigned i = 0; i < n_taps; i++)
			tap_numbers[i] = QFD_TAP + (int)i;
		def_mac(vm->def, mac);
		mac_format(mac, mac_str);
	}

	struct qemu_config qc = {
		.binary = vm->opts.qemu,
		.name = vm->def->name,
		.accel = vm->opts.accel,
		.vcpus = vm->def->vcpus,
		.memory_mib = vm->def->memory_mib,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = cmdline,
		.qmp_fd = QFD_QMP,
		.console_fd = QFD_CONSOLE,
		.notify_fd = QFD_NOTIFY,
		.agent_fd = QFD_AGENT,
		.fs = fs,
		.n_fs = vm->n_shares,
		.disks = disks,
		.n_disks = vm->n_images,
		.mac = vm->def->network ? mac_str : NULL,
		.tap_fds = tap_numbers,
		.n_taps = n_taps,
		.vhost = vm->opts.accel == ACCEL_KVM && access("/dev/vhost-net", R_OK | W_OK) == 0,
	};
	r = qemu_argv(&qc, &argv);
	if (r < 0)
		return r;

	struct spawn_fd fds[5 + TAP_QUEUES_MAX] = {
		{ lfd[0], QFD_QMP }, { lfd[1], QFD_CONSOLE }, { lfd[2], QFD_NOTIFY },
		{ lfd[3], QFD_AGENT }, { vm->lock_fd, QFD_LOCK },
	};
	for (unsigned i = 0; i < n_taps; i++)
		fds[5 + i] = (struct spawn_fd){ taps.fd[i], tap_numbers[i] };
	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = 5 + n_taps,
		.stdin_fd = -1,
		.stdout_fd = vm->log.fd,
		.stderr_fd = vm->log.fd,
		.profile = SANDBOX_QEMU,
		.die_with_parent = vm->opts.die_with_parent,
	};
	r = spawn(&o, &vm->qemu.pid, &vm->qemu.pidfd);
	if (r < 0)
		return log_error_errno(r, "%s: cannot start QEMU (%s): %m", vm->def->name, vm->opts.qemu);
	vm->qemu.running = true;
	log_debug("%s: QEMU (pid %d) started %.1f ms into the start", vm->def->name, (int)vm->qemu.pid,
		  (double)(now_usec() - vm->t_start) / USEC_PER_MSEC);
	r = loop_add_child(vm->loop, vm->qemu.pidfd, on_qemu_exit, vm, &vm->qemu.src);
	if (r < 0)
		return r;
	pidfile = xasprintf("%s/qemu.pid", vm->dir);
	if (pidfile)
		write_pidfile(pidfile, vm->qemu.pid);

	/* QEMU owns the listening sockets now; connecting queues in their
	 * backlog until its main loop accepts. */
	for (int i = 0; i < 4; i++) {
		lfd[i] = safe_close(lfd[i]);
		cfd[i] = unix_connect(paths[i]);
		if (cfd[i] < 0) {
			r = cfd[i];
			for (int j = 0; j < i; j++)
				safe_close(cfd[j]);
			return log_error_errno(r, "%s: connecting to %s: %m", vm->def->name, paths[i]);
		}
	}
	r = attach_channels(vm, cfd);
	if (r == 0)
		r = qmp_command(vm->qmp, "cont", NULL, on_cont, vm);
	if (r < 0)
		return log_error_errno(r, "%s: setting up QEMU's channels: %m", vm->def->name);
	return 0;
}

static void undo_start(struct vm *vm)
{
	if (vm->dom_running)
		vmlv_destroy(vm);
	vm->dom_running = false;
	child_kill_wait(&vm->qemu);
	for (size_t i = 0; i < vm->n_shares; i++)
		child_kill_wait(&vm->shares[i].proc);
	vm_cleanup_files(vm);
	vm->reason = VM_EXIT_NONE;
	free(vm->detail);
	vm->detail = NULL;
	vm_set_state(vm, VM_STOPPED);
}

/* Everything before the first process: the lock, disks, the log, the
 * closure check and the kernel command line. The daemon does this during a
 * restart's backoff, so that the restart itself only starts processes. */
static int prepare(struct vm *vm)
{
	struct schema_errors errors = {};
	_cleanup_free_ char *params = NULL;
	int r;

	r = vm_lock_run_dir(vm, true);
	if (r == -EBUSY)
		return log_error_errno(r, "%s: already running (%s is locked by another vmd or its QEMU)",
				       vm->def->name, vm->dir);
	if (r < 0)
		return log_error_errno(r, "%s: preparing %s: %m", vm->def->name, vm->dir);
	r = sweep_disk_dir(vm);
	if (r < 0)
		return log_error_errno(r, "%s: removing stale disks in %s: %m", vm->def->name, vm->disk_dir);
	r = vm_open_log(vm);
	if (r < 0)
		return log_error_errno(r, "%s: opening the log in %s: %m", vm->def->name, vm->host->log_dir);
	vm->log_offset = vmlog_offset(&vm->log);
	vmlog_printf(&vm->log, "starting %s from %s", vm->def->name, vm->def->system);

	free(vm->system);
	vm->system = NULL;
	{
		_cleanup_free_ char *store = def_resolve_store(vm->host->store_dir);

		r = store ? def_check_system(vm->def, store, &vm->system, &errors) : -errno;
		if (!store)
			schema_error(&errors, "store_dir", "%s: %s", vm->host->store_dir, strerror(errno));
	}
	if (r < 0) {
		for (size_t i = 0; i < errors.n; i++)
			log_error("%s: %s", vm->def->name, errors.lines[i]);
		schema_errors_clear(&errors);
		return r;
	}
	add_gcroot(vm);
	r = read_closure_params(vm, &params);
	if (r < 0)
		return log_error_errno(r, "%s: reading %s/kernel-params: %m", vm->def->name, vm->def->system);
	free(vm->cmdline);
	vm->cmdline = NULL;
	r = kernel_cmdline(vm->def, vm->system, params, &vm->cmdline);
	if (r == -E2BIG)
		log_error("%s: the kernel command line is longer than %d bytes", vm->def->name,
			  KERNEL_CMDLINE_MAX);
	if (r < 0)
		return r;
	r = create_images(vm);
	if (r < 0)
		return r;
	r = vm_plan_shares(vm);
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
	if (vm->state != VM_STOPPED && vm->state != VM_FAILED && vm->state != VM_BACKOFF)
		return -EBUSY;
	r = prepare(vm);
	if (r < 0) {
		if (vm->log.fd >= 0)
			vmlog_printf(&vm->log, "start failed: %s", strerror(-r));
		vm_cleanup_files(vm);
		vm->prepared = false;
	}
	return r;
}

int vm_start(struct vm *vm)
{
	int r;

	if (vm->state != VM_STOPPED && vm->state != VM_FAILED && vm->state != VM_BACKOFF)
		return -EBUSY;
	vm->t_start = now_usec();
	vm->t_down = 0;
	vm->started_at = now_realtime_usec();
	vm->t_ready = 0;
	vm->ready = false;
	vm->reason = VM_EXIT_NONE;
	vm->shutdown_reason = NULL;
	vm_set_state(vm, VM_PREPARING);
	if (!vm->prepared) {
		r = prepare(vm);
		if (r < 0)
			goto fail;
	}

	vm->driver = def_driver(vm->def, vm->host->driver);
	if (vm->driver == DRIVER_LIBVIRT) {
		/* libvirt starts virtiofsd and QEMU itself. */
		vm_set_state(vm, VM_BOOTING);
		r = vmlv_start(vm);
		if (r < 0)
			goto fail;
		goto started;
	}
	vm_set_state(vm, VM_STARTING_SHARES);
	check_nofile();
	for (size_t i = 0; i < vm->n_shares; i++) {
		r = start_share(vm, &vm->shares[i]);
		if (r < 0)
			goto fail;
	}

	vm_set_state(vm, VM_BOOTING);
	r = start_qemu(vm, vm->cmdline);
	if (r < 0)
		goto fail;
	save_state(vm);
started:
	vm->prepared = false;
	vm_timer_arm(vm, TIMER_READY, vm->t_start + (usec_t)vm->host->ready_timeout_s * USEC_PER_SEC);
	loop_timer_set(vm->log_timer, now_usec() + LOG_CHECK_USEC);
	return 0;

fail:
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "start failed: %s", strerror(r < 0 ? -r : EIO));
	undo_start(vm);
	return r < 0 ? r : -EIO;
}

static void on_powerdown(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	struct vm *vm = userdata;

	(void)q;
	(void)ret;
	if (error == -EIO && vm->qemu.running) {
		log_warning("%s: system_powerdown failed (%s); sending SIGTERM", vm->def->name, desc);
		child_signal(&vm->qemu, SIGTERM);
		vm_timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
	}
}

int vm_stop(struct vm *vm, bool force)
{
	vm_unprepare(vm);
	if (!any_child_running(vm))
		return 0;
	vm->stop_requested = true;
	if (force) {
		vm->stop_forced = true;
		if (vm->dom_running)
			vmlv_destroy(vm);
		child_signal(&vm->qemu, SIGKILL);
		for (size_t i = 0; i < vm->n_shares; i++)
			child_signal(&vm->shares[i].proc, SIGKILL);
		return 0;
	}
	if (vm->state == VM_STOPPING)
		return 0;
	vm_set_state(vm, VM_STOPPING);
	if (vm->dom_running) {
		/* The same graceful path, through libvirt. */
		if (vm->ready && vmlv_stop(vm) == 0) {
			vmlog_printf(&vm->log, "stopping: ACPI powerdown (through libvirt)");
			return vm_timer_arm(vm, TIMER_POWERDOWN,
					    now_usec() + (usec_t)vm->host->stop_timeout_s * USEC_PER_SEC);
		}
		vmlv_destroy(vm);
		return vm_timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
	}
	/* ACPI powerdown only reaches a guest that is up; before READY,
	 * QEMU's own orderly exit on SIGTERM is the graceful path. */
	if (vm->ready && vm->qmp &&
	    qmp_command(vm->qmp, "system_powerdown", NULL, on_powerdown, vm) == 0) {
		vmlog_printf(&vm->log, "stopping: ACPI powerdown");
		return vm_timer_arm(vm, TIMER_POWERDOWN,
				 now_usec() + (usec_t)vm->host->stop_timeout_s * USEC_PER_SEC);
	}
	child_signal(&vm->qemu, SIGTERM);
	return vm_timer_arm(vm, TIMER_TERM, now_usec() + KILL_GRACE_USEC);
}

int vm_exec(struct vm *vm, char *const *argv, usec_t timeout, qga_exec_cb cb, void *userdata)
{
	if (!vm->qga || vm->tearing_down)
		return -ENOTCONN;
	return qga_exec(vm->qga, argv, timeout, cb, userdata);
}

int vm_new(struct loop *l, const struct host_config *host, const struct vm_options *opts,
	   struct vm_def *def, const struct vm_callbacks *cb, void *userdata, struct vm **ret)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	int r;

	if (!vm)
		return -ENOMEM;
	vm->loop = l;
	vm->host = host;
	vm->opts = *opts;
	vm->def = def;
	vm->cb = cb;
	vm->userdata = userdata;
	vm->lock_fd = vm->console_fd = vm->notify_fd = vm->qemu.pidfd = vm->log.fd = -EBADF;
	vm->dir = vm_run_dir(host, def->name);
	vm->disk_dir = vm_disk_dir(host, def->name);
	vm->log_path = xasprintf("%s/%s.log", host->log_dir, def->name);
	vm->qemu.what = strdup("QEMU");
	if (!vm->dir || !vm->disk_dir || !vm->log_path || !vm->qemu.what) {
		r = -ENOMEM;
		goto fail;
	}
	r = loop_add_timer(l, 0, on_timer, vm, &vm->timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_share_timer, vm, &vm->share_timer);
	if (r == 0)
		r = loop_add_timer(l, 0, on_log_timer, vm, &vm->log_timer);
	if (r < 0)
		goto fail;
	*ret = vm;
	return 0;
fail:
	loop_source_freep(&vm->timer);
	loop_source_freep(&vm->share_timer);
	loop_source_freep(&vm->log_timer);
	free(vm->qemu.what);
	free(vm->dir);
	free(vm->disk_dir);
	free(vm->log_path);
	free(vm);
	/* Ownership of def was taken. */
	def_free(def);
	return r;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->dom_running)
		vmlv_destroy(vm);
	vm->dom_running = false;
	if (any_child_running(vm)) {
		child_kill_wait(&vm->qemu);
		for (size_t i = 0; i < vm->n_shares; i++)
			child_kill_wait(&vm->shares[i].proc);
	}
	vm_cleanup_files(vm);
	loop_source_freep(&vm->timer);
	loop_source_freep(&vm->share_timer);
	loop_source_freep(&vm->log_timer);
	def_free(vm->def);
	free(vm->qemu.what);
	free(vm->detail);
	free(vm->dir);
	free(vm->disk_dir);
	free(vm->log_path);
	free(vm->system);
	free(vm->cmdline);
	free(vm);
}

void vm_detach(struct vm *vm)
{
	if (vm->state == VM_STOPPED || vm->state == VM_BACKOFF || vm->state == VM_FAILED)
		return;
	/* The domain runs on; the next daemon finds it by its metadata. */
	vmlv_release(vm);
	close_channels(vm);
	child_forget(&vm->qemu);
	for (size_t i = 0; i < vm->n_shares; i++)
		child_forget(&vm->shares[i].proc);
	free_shares(vm);
	for (size_t i = 0; i < vm->n_images; i++)
		free(vm->images[i].path);
	free(vm->images);
	vm->images = NULL;
	vm->n_images = 0;
	/* QEMU holds its own copy of the lock. */
	vm->lock_fd = safe_close(vm->lock_fd);
	vmlog_close(&vm->log);
	loop_timer_set(vm->timer, 0);
	loop_timer_set(vm->share_timer, 0);
	loop_timer_set(vm->log_timer, 0);
	vm->tearing_down = false;
	vm->ready = false;
	vm->state = VM_STOPPED;
}

int vm_sweep_stale(const struct host_config *host, const char *name)
{
	struct vm_def def = { .name = (char *)name };
	struct vm vm = { .host = host, .def = &def, .lock_fd = -EBADF };
	int r;

	vm.dir = vm_run_dir(host, name);
	vm.disk_dir = vm_disk_dir(host, name);
	r = vm.dir && vm.disk_dir ? vm_lock_run_dir(&vm, true) : -ENOMEM;
	if (r == 0)
		r = sweep_disk_dir(&vm);
	if (vm.lock_fd >= 0) {
		if (rmdir(vm.disk_dir) < 0 && errno != ENOENT)
			r = r ?: -errno;
		remove_run_dir(&vm);
	}
	free(vm.dir);
	free(vm.disk_dir);
	return r;
}

void vm_set_def(struct vm *vm, struct vm_def *def)
{
	if (vm->state != VM_STOPPED && vm->state != VM_BACKOFF && vm->state != VM_FAILED) {
		def_free(def);
		return;
	}
	vm_unprepare(vm);
	def_free(vm->def);
	vm->def = def;
}

void vm_unprepare(struct vm *vm)
{
	if (vm->prepared && !any_child_running(vm))
		vm_cleanup_files(vm);
}

void vm_set_idle_state(struct vm *vm, enum vm_state state)
{
	if (vm->state != VM_STOPPED && vm->state != VM_BACKOFF && vm->state != VM_FAILED)
		return;
	/* Only a VM about to restart keeps what vm_prepare() made. */
	if (state != VM_BACKOFF)
		vm_unprepare(vm);
	vm_set_state(vm, state);
}

void vm_set_restarts(struct vm *vm, uint32_t restarts)
{
	vm->restarts = restarts;
}

usec_t vm_down_usec(const struct vm *vm)
{
	return vm->t_down;
}

usec_t vm_started_usec(const struct vm *vm)
{
	return main_running(vm) ? vm->t_start : 0;
}

/* Opens a process named in a state file, if it is still that process. */
static int adopt_child(struct vm *vm, struct vm_child *c, const struct proc_id *id, loop_child_cb cb)
{
	int r = proc_id_open(id, &c->pidfd);

	if (r < 0)
		return r;
	c->pid = id->pid;
	c->running = true;
	return loop_add_child(vm->loop, c->pidfd, cb, vm, &c->src);
}

int vm_adopt_share(struct vm *vm, struct vm_share *s, const struct proc_id *id)
{
	return adopt_child(vm, &s->proc, id, on_share_exit);
}

void vm_forget_share(struct vm *vm, struct vm_share *s)
{
	(void)vm;
	child_forget(&s->proc);
}

int vm_adopt_domain(struct vm *vm, struct lv_conn *c, const char *domain, const struct vmstate *st)
{
	/* Also one waiting for libvirtd to come back (backoff, failed). */
	if (vm->state != VM_STOPPED && vm->state != VM_BACKOFF && vm->state != VM_FAILED)
		return -EBUSY;
	vm_unprepare(vm);
	return vmlv_adopt(vm, c, domain, st);
}

const char *vm_host(const struct vm *vm)
{
	return vm->def->host ? vm->def->host : "local";
}

const char *vm_driver_name(const struct vm *vm)
{
	return driver_names[main_running(vm) ? vm->driver : def_driver(vm->def, vm->host->driver)];
}

int vm_domain_id(const struct vm *vm)
{
	return vm->dom ? lv_dom_id(vm->dom) : 0;
}

static int adopt_channels(struct vm *vm)
{
	static const char *const names[] = { "qmp", "con", "notify", "qga" };
	int fds[4];
	int r = 0;

	for (int i = 0; i < 4; i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s.sock", vm->dir, names[i]);

		fds[i] = p ? unix_connect(p) : -ENOMEM;
		if (fds[i] < 0) {
			r = fds[i];
			for (int j = 0; j < i; j++)
				safe_close(fds[j]);
			return r;
		}
	}
	return attach_channels(vm, fds);
}

int vm_adopt_plan(struct vm *vm)
{
	int r;

	vm->log_offset = vmlog_offset(&vm->log);
	r = vm_plan_images(vm);
	return r < 0 ? r : vm_plan_shares(vm);
}

void vm_adopted(struct vm *vm, const struct vmstate *st)
{
	uint64_t now_real = now_realtime_usec();

	/* The boot's times, carried over on this host's monotonic clock. */
	vm->started_at = st->started_at;
	vm->t_start = now_usec() - (now_real > st->started_at ? now_real - st->started_at : 0);
	vm->t_ready = vm->t_start + st->boot_usec;
	vm->ready = true;
	vm->restarts = st->restarts;
	vm_set_state(vm, VM_RUNNING);
	loop_timer_set(vm->log_timer, now_usec() + LOG_CHECK_USEC);
}

int vm_adopt(struct vm *vm, const struct vmstate *st)
{
	const char *why = NULL;
	int r;

	if (vm->state != VM_STOPPED)
		return -EBUSY;
	vm->adopted = true;
	vm->reason = VM_EXIT_NONE;
	vm->shutdown_reason = NULL;
	r = vm_open_log(vm);
	if (r < 0)
		return log_error_errno(r, "%s: opening the log: %m", vm->def->name);
	r = vm_adopt_plan(vm);
	if (r < 0)
		goto stale;

	/* QEMU first: without it there is nothing to adopt. */
	r = adopt_child(vm, &vm->qemu, &st->qemu, on_qemu_exit);
	if (r < 0) {
		why = "its QEMU is gone";
		goto stale;
	}
	if (st->n_shares != vm->n_shares) {
		why = "its state file does not match its definition";
		goto stale;
	}
	for (size_t i = 0; i < vm->n_shares; i++)
		if (adopt_child(vm, &vm->shares[i].proc, &st->shares[i], on_share_exit) < 0) {
			/* The guest would hang on this share: not worth keeping. */
			why = "one of its virtiofsd is gone";
			goto stale;
		}
	if (!st->ready) {
		why = "it was not fully started";
		goto stale;
	}
	r = adopt_channels(vm);
	if (r < 0) {
		why = "its sockets do not answer";
		goto stale;
	}

	vmlog_printf(&vm->log, "adopted by a new vmd (QEMU pid %d)", (int)vm->qemu.pid);
	log_info("%s: adopted (QEMU pid %d)", vm->def->name, (int)vm->qemu.pid);
	vm_adopted(vm, st);
	return 0;

stale:
	log_warning("%s: not adopting the running VM: %s; stopping it", vm->def->name, why ? why : strerror(-r));
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "not adopted: %s", why ? why : strerror(-r));
	child_kill_wait(&vm->qemu);
	for (size_t i = 0; i < vm->n_shares; i++)
		child_kill_wait(&vm->shares[i].proc);
	if (vm_lock_run_dir(vm, true) < 0)
		log_warning("%s: %s is still locked; leaving it", vm->def->name, vm->dir);
	vm->adopted = false;
	vm_cleanup_files(vm);
	return -ESTALE;
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
	return vm->ready;
}

pid_t vm_qemu_pid(const struct vm *vm)
{
	return vm->qemu.running ? vm->qemu.pid : 0;
}

usec_t vm_ready_usec(const struct vm *vm)
{
	return vm->t_ready ? vm->t_ready - vm->t_start : 0;
}

const char *vm_log_path(const struct vm *vm)
{
	return vm->log_path;
}

char *vm_log_tail(const struct vm *vm, unsigned n)
{
	return vmlog_tail(vm->log_path, n, vm->log_offset);
}
