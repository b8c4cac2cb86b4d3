/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The QEMU driver: vmd's own virtiofsd and QEMU processes. Each virtiofsd
 * gets a listening socket bound before it starts (that is its readiness:
 * QEMU can connect before it reaches accept()); QEMU starts paused with
 * pre-bound QMP, console, notify and agent sockets and the run directory's
 * lock, vmd connects to them and lets it run. The daemon keeps state.json
 * in the run directory (identities of QEMU and every virtiofsd) so that a
 * next daemon can find and adopt the VM. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "hostnet.h"
#include "link.h"
#include "log.h"
#include "qemu.h"
#include "qmp.h"
#include "driver.h"

/* QEMU's fd numbers for its pre-bound sockets, the run-dir lock and the
 * tap queues. */
enum { QFD_QMP = 3, QFD_CONSOLE, QFD_NOTIFY, QFD_AGENT, QFD_LOCK, QFD_TAP };

/* The channels' sockets in the run directory, in QFD order. */
static const char *const chan_names[] = { "qmp", "con", "notify", "qga" };
#define N_CHANNELS ELEMENTSOF(chan_names)

struct drv_vm {
	struct vm_plan *p;
	const struct drv_events *ev;
	struct child qemu;
	struct qmp *qmp;
	struct qga *qga;
	int console_fd, notify_fd;
	struct loop_source *console_src, *notify_src;
	const char *shutdown_reason; /* from QMP SHUTDOWN; static strings */
	/* Until QEMU is up: copies of each virtiofsd's listening socket (a
	 * connection still queued there was never accepted) and the timer
	 * that gives up on a QEMU stuck in a vhost-user handshake. */
	int *share_lfds;
	size_t n_share_lfds;
	struct loop_source *start_timer;
};

static int write_pidfile(const char *path, pid_t pid)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	return write_file(path, buf, 0644, 0);
}

static int qd_new(struct vm_plan *p, const struct drv_events *ev, struct drv_vm **ret)
{
	struct drv_vm *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	*d = (struct drv_vm){ .p = p, .ev = ev, .console_fd = -EBADF, .notify_fd = -EBADF };
	if (child_init(&d->qemu, "QEMU") < 0) {
		free(d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

/* QEMU is up, or going: nothing more to wait for. */
static void start_watch_done(struct drv_vm *d)
{
	loop_source_freep(&d->start_timer);
	for (size_t i = 0; i < d->n_share_lfds; i++)
		safe_close(d->share_lfds[i]);
	d->share_lfds = mfree(d->share_lfds);
	d->n_share_lfds = 0;
}

static void qd_disconnect(struct drv_vm *d)
{
	start_watch_done(d);
	qmp_freep(&d->qmp);
	qga_freep(&d->qga);
	loop_source_freep(&d->console_src);
	loop_source_freep(&d->notify_src);
	d->console_fd = safe_close(d->console_fd);
	d->notify_fd = safe_close(d->notify_fd);
}

static void qd_release(struct drv_vm *d)
{
	qd_disconnect(d);
	child_done(&d->qemu);
	free(d);
}

/* The state file lets the next daemon adopt this VM; only the daemon asks
 * for it (a throwaway run dies with its vmd). */
static void save_state(struct drv_vm *d)
{
	struct vm_plan *p = d->p;
	_cleanup_free_ struct proc_id *shares = calloc(p->n_shares + 1, sizeof(*shares));
	struct vmstate st = {
		.def = (struct vm_def *)p->def,
		.shares = shares,
		.n_shares = p->n_shares,
		.started_at = p->started_at,
		.boot_usec = p->boot_usec,
		.ready = p->ready,
		.restarts = p->restarts,
		.last_exit = (char *)p->last_exit,
	};
	int r;

	if (!p->opts->save_state || !shares)
		return;
	r = child_identity(&d->qemu, &st.qemu);
	for (size_t i = 0; r == 0 && i < p->n_shares; i++)
		r = child_identity(&p->shares[i].proc, &shares[i]);
	if (r == 0)
		r = vmstate_write(p->dir, &st);
	if (r < 0)
		log_warning_errno(r, "%s: writing %s/state.json: %m", p->def->name, p->dir);
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

static int start_share(struct drv_vm *d, size_t i)
{
	struct vm_share *s = &d->p->shares[i];
	struct vm_plan *p = d->p;
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_close_ int lfd = -EBADF;
	struct virtiofsd_config c = {
		.binary = p->opts->virtiofsd,
		.source = s->source,
		.fd = 3,
		.cache = s->cache,
		.read_only = s->read_only,
	};
	int r;

	lfd = unix_listen(s->socket);
	if (lfd < 0)
		return log_error_errno(lfd, "%s: binding %s: %m", p->def->name, s->socket);
	d->share_lfds[i] = fcntl(lfd, F_DUPFD_CLOEXEC, 3);
	if (d->share_lfds[i] < 0)
		return -errno;
	r = virtiofsd_argv(&c, p->opts->caps, &argv);
	if (r < 0)
		return r;

	struct spawn_fd fds[] = { { lfd, 3 } };
	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = ELEMENTSOF(fds),
		.stdin_fd = -1,
		.stdout_fd = p->log->fd,
		.stderr_fd = p->log->fd,
		.profile = p->opts->caps->inode_file_handles ? SANDBOX_VIRTIOFSD_FH : SANDBOX_VIRTIOFSD,
		.die_with_parent = p->opts->die_with_parent,
		/* virtiofsd keeps an fd per inode it has seen. */
		.nofile = VIRTIOFSD_NOFILE,
		.readonly_path = s->read_only ? s->source : NULL,
	};
	r = child_spawn(&s->proc, p->loop, &o, d->ev->share_exited, d->ev->userdata);
	if (r < 0)
		return log_error_errno(r, "%s: cannot start virtiofsd for %s (%s): %m", p->def->name, s->tag,
				       p->opts->virtiofsd);
	(void)write_pidfile(s->pidfile, s->proc.pid);
	return 0;
}

static int qd_start_shares(struct drv_vm *d)
{
	check_nofile();
	start_watch_done(d);
	d->share_lfds = malloc((d->p->n_shares + 1) * sizeof(int));
	if (!d->share_lfds)
		return -ENOMEM;
	for (size_t i = 0; i < d->p->n_shares; i++)
		d->share_lfds[i] = -EBADF;
	d->n_share_lfds = d->p->n_shares;
	for (size_t i = 0; i < d->p->n_shares; i++) {
		int r = start_share(d, i);
		if (r < 0)
			return r;
	}
	return 0;
}

/* True if a connection waits in the listening socket's queue: QEMU
 * connected, and this virtiofsd never accepted it. */
static bool never_accepted(int lfd)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };

	return lfd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* QEMU connects to every virtiofsd while it sets up its devices and waits
 * for each one's answers before its monitor runs: a virtiofsd that never
 * serves holds it there for good. */
static void on_start_timeout(struct loop_source *src, void *userdata)
{
	struct drv_vm *d = userdata;
	struct vm_plan *p = d->p;
	_cleanup_free_ char *tags = NULL, *detail = NULL;

	(void)src;
	for (size_t i = 0; i < d->n_share_lfds; i++) {
		char *t;

		if (!never_accepted(d->share_lfds[i]))
			continue;
		t = xasprintf("%s%s%s (pid %d)", tags ? tags : "", tags ? ", " : "", p->shares[i].tag,
			      (int)p->shares[i].proc.pid);
		if (!t)
			break;
		free(tags);
		tags = t;
	}
	if (tags)
		detail = xasprintf("virtiofsd for %s never accepted QEMU's vhost-user connection within %u s "
				   "(start_timeout_s); it runs but does not serve", tags, p->host->start_timeout_s);
	else
		detail = xasprintf("QEMU was not up within %u s (start_timeout_s): its monitor never answered, "
				   "so it is stuck setting up a device, most likely in a vhost-user handshake with "
				   "a virtiofsd that does not answer", p->host->start_timeout_s);
	start_watch_done(d);
	log_error("%s: %s", p->def->name, detail ? detail : "QEMU was not up in time");
	d->ev->start_failed(d->ev->userdata, detail ? detail : "QEMU was not up in time");
}

static void on_qemu_exit(struct child *c, const siginfo_t *si, void *userdata)
{
	struct drv_vm *d = userdata;
	const char *why = d->shutdown_reason;
	_cleanup_free_ char *detail = NULL, *early = NULL;
	enum drv_end end = DRV_END_EXITED;
	char buf[128];

	(void)c;
	child_describe_status(si, buf, sizeof(buf));
	if (d->p->log->fd >= 0)
		vmlog_printf(d->p->log, "QEMU (pid %d) %s", (int)(si ? si->si_pid : 0), buf);
	if (why && streq(why, "guest-shutdown"))
		end = DRV_END_POWEROFF;
	else if (why && streq(why, "guest-reset"))
		end = DRV_END_REBOOT;
	else if (why && streq(why, "guest-panic"))
		end = DRV_END_PANIC;
	detail = end == DRV_END_REBOOT ? strdup("the guest rebooted (or its kernel panicked)") : xasprintf("QEMU %s", buf);
	early = xasprintf("QEMU %s before the guest was ready", buf);
	d->ev->ended(d->ev->userdata, end, detail ? detail : buf, early ? early : buf);
}

static void on_qmp_event(struct qmp *q, const char *event, json_t *data, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)q;
	if (streq(event, "SHUTDOWN")) {
		const char *reason = json_string_value(json_object_get(data, "reason"));
		static const char *const known[] = { "guest-shutdown", "guest-reset", "guest-panic" };

		d->shutdown_reason = "other";
		for (size_t i = 0; reason && i < ELEMENTSOF(known); i++)
			if (streq(reason, known[i]))
				d->shutdown_reason = known[i];
	}
}

static void on_cont(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	struct drv_vm *d = userdata;
	_cleanup_free_ char *detail = NULL;

	(void)q;
	(void)ret;
	start_watch_done(d);
	/* A closed connection means QEMU is exiting; its exit explains. */
	if (error != -EIO)
		return;
	detail = xasprintf("QMP cont failed: %s", desc);
	d->ev->start_failed(d->ev->userdata, detail ? detail : "QMP cont failed");
}

/* Console output and notify data: what is there, passed on. */
static void read_channel(struct drv_vm *d, int fd, struct loop_source **src,
			 void (*feed)(void *userdata, const char *buf, size_t n))
{
	char buf[16384];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_source_freep(src);
		return;
	}
	feed(d->ev->userdata, buf, (size_t)n);
}

static void on_console(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)s;
	(void)revents;
	read_channel(d, fd, &d->console_src, d->ev->console);
}

static void on_notify(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)s;
	(void)revents;
	read_channel(d, fd, &d->notify_src, d->ev->notify);
}

/* Takes the connected channel fds (QMP, console, notify, agent), as a
 * fresh start and an adoption both have them. */
static int attach_channels(struct drv_vm *d, int fds[N_CHANNELS])
{
	struct loop *l = d->p->loop;
	int r;

	d->console_fd = fds[1];
	d->notify_fd = fds[2];
	r = qmp_new(l, fds[0], on_qmp_event, NULL, d, &d->qmp);
	if (r == 0)
		r = qga_new(l, fds[3], &d->qga);
	else
		safe_close(fds[3]);
	if (r == 0)
		r = fd_nonblock(d->console_fd, true);
	if (r == 0)
		r = fd_nonblock(d->notify_fd, true);
	if (r == 0)
		r = loop_add_io(l, d->console_fd, EPOLLIN, on_console, d, &d->console_src);
	if (r == 0)
		r = loop_add_io(l, d->notify_fd, EPOLLIN, on_notify, d, &d->notify_src);
	return r;
}

/* Connects to the channels' sockets in the run directory. QEMU owns the
 * listening sockets: connecting queues in their backlog until its main
 * loop accepts. */
static int connect_channels(struct drv_vm *d)
{
	int fds[N_CHANNELS];

	for (size_t i = 0; i < N_CHANNELS; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s.sock", d->p->dir, chan_names[i]);

		fds[i] = path ? unix_connect(path) : -ENOMEM;
		if (fds[i] < 0) {
			int r = fds[i];

			for (size_t j = 0; j < i; j++)
				safe_close(fds[j]);
			return r;
		}
	}
	return attach_channels(d, fds);
}

/* vmd's copies of the listening sockets and of a tap's queue fds: closed
 * once QEMU holds them, so the tap lives exactly as long as that QEMU. */
struct qemu_fds {
	int chan[N_CHANNELS];
	int tap[TAP_QUEUES_MAX];
	unsigned n_taps;
};

static void qemu_fds_done(struct qemu_fds *f)
{
	for (size_t i = 0; i < N_CHANNELS; i++)
		safe_close(f->chan[i]);
	for (unsigned i = 0; i < f->n_taps; i++)
		safe_close(f->tap[i]);
}

/* The pure part: the plan as QEMU's configuration and argv, with the fd
 * numbers QEMU will have. */
int qemu_plan_argv(const struct vm_plan *p, unsigned n_taps, bool vhost, char ***ret)
{
	_cleanup_free_ char *kernel = path_join(p->system, "kernel"), *initrd = path_join(p->system, "initrd");
	_cleanup_free_ struct qemu_fs *fs = calloc(p->n_shares + 1, sizeof(*fs));
	_cleanup_free_ struct qemu_disk *disks = calloc(p->n_images + 1, sizeof(*disks));
	int tap_numbers[TAP_QUEUES_MAX];
	char mac_str[18];

	if (!kernel || !initrd || !fs || !disks)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_shares; i++)
		fs[i] = (struct qemu_fs){ p->shares[i].tag, p->shares[i].socket };
	for (size_t i = 0; i < p->n_images; i++)
		disks[i] = (struct qemu_disk){ p->images[i].disk->name, p->images[i].path,
					       !p->images[i].disk->persistent, p->images[i].disk->base != NULL };
	for (unsigned i = 0; i < n_taps; i++)
		tap_numbers[i] = QFD_TAP + (int)i;
	if (p->def->network) {
		uint8_t mac[6];

		def_mac(p->def, mac);
		mac_format(mac, mac_str);
	}
	struct qemu_config qc = {
		.binary = p->opts->qemu,
		.name = p->def->name,
		.accel = p->opts->accel,
		.vcpus = p->def->vcpus,
		.memory_mib = p->def->memory_mib,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = p->cmdline,
		.qmp_fd = QFD_QMP,
		.console_fd = QFD_CONSOLE,
		.notify_fd = QFD_NOTIFY,
		.agent_fd = QFD_AGENT,
		.fs = fs,
		.n_fs = p->n_shares,
		.disks = disks,
		.n_disks = p->n_images,
		.mac = p->def->network ? mac_str : NULL,
		.tap_fds = tap_numbers,
		.n_taps = n_taps,
		.vhost = vhost,
	};
	return qemu_argv(&qc, ret);
}

static int qd_start(struct drv_vm *d)
{
	struct vm_plan *p = d->p;
	_cleanup_(qemu_fds_done) struct qemu_fds qf = {};
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *pidfile = NULL;
	int r;

	for (size_t i = 0; i < N_CHANNELS; i++)
		qf.chan[i] = -EBADF;
	for (size_t i = 0; i < N_CHANNELS; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s.sock", p->dir, chan_names[i]);

		if (!path)
			return -ENOMEM;
		qf.chan[i] = unix_listen(path);
		if (qf.chan[i] < 0)
			return log_error_errno(qf.chan[i], "%s: binding %s: %m", p->def->name, path);
	}
	if (p->def->network) {
		unsigned n = p->def->vcpus < TAP_QUEUES_MAX ? p->def->vcpus : TAP_QUEUES_MAX;

		if (!p->opts->net)
			return log_error_errno(ENETDOWN, "%s: the host networks are not up", p->def->name);
		/* A queue pair per vCPU, as far as the tap allows. */
		r = hostnet_tap(p->opts->net, p->def, n, qf.tap);
		if (r < 0)
			return r;
		qf.n_taps = n;
	}
	r = qemu_plan_argv(p, qf.n_taps, p->opts->accel == ACCEL_KVM && access("/dev/vhost-net", R_OK | W_OK) == 0,
			   &argv);
	if (r < 0)
		return r;

	struct spawn_fd fds[5 + TAP_QUEUES_MAX] = {
		{ qf.chan[0], QFD_QMP }, { qf.chan[1], QFD_CONSOLE }, { qf.chan[2], QFD_NOTIFY },
		{ qf.chan[3], QFD_AGENT }, { p->lock_fd, QFD_LOCK },
	};
	for (unsigned i = 0; i < qf.n_taps; i++)
		fds[5 + i] = (struct spawn_fd){ qf.tap[i], QFD_TAP + (int)i };
	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = 5 + qf.n_taps,
		.stdin_fd = -1,
		.stdout_fd = p->log->fd,
		.stderr_fd = p->log->fd,
		.profile = SANDBOX_QEMU,
		.die_with_parent = p->opts->die_with_parent,
	};
	r = child_spawn(&d->qemu, p->loop, &o, on_qemu_exit, d);
	if (r < 0)
		return log_error_errno(r, "%s: cannot start QEMU (%s): %m", p->def->name, p->opts->qemu);
	log_debug("%s: QEMU (pid %d) started %.1f ms into the start", p->def->name, (int)d->qemu.pid,
		  (double)(now_usec() - p->t_start) / USEC_PER_MSEC);
	pidfile = path_join(p->dir, "qemu.pid");
	if (pidfile)
		(void)write_pidfile(pidfile, d->qemu.pid);

	qemu_fds_done(&qf);
	qf = (struct qemu_fds){ .chan = { -EBADF, -EBADF, -EBADF, -EBADF } };
	r = connect_channels(d);
	if (r < 0)
		return log_error_errno(r, "%s: connecting to QEMU's channels in %s: %m", p->def->name, p->dir);
	r = qmp_command(d->qmp, "cont", NULL, on_cont, d);
	if (r == 0)
		r = loop_add_timer(p->loop, now_usec() + (usec_t)p->host->start_timeout_s * USEC_PER_SEC,
				   on_start_timeout, d, &d->start_timer);
	if (r < 0)
		return log_error_errno(r, "%s: setting up QEMU's channels: %m", p->def->name);
	save_state(d);
	return 0;
}

static void on_powerdown(struct qmp *q, json_t *ret, int error, const char *desc, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)q;
	(void)ret;
	if (error == -EIO && d->qemu.running) {
		log_warning("%s: system_powerdown failed (%s); sending SIGTERM", d->p->def->name, desc);
		d->ev->stop_failed(d->ev->userdata);
	}
}

static int qd_stop(struct drv_vm *d)
{
	int r = d->qmp ? qmp_command(d->qmp, "system_powerdown", NULL, on_powerdown, d) : -ENOTCONN;

	if (r == 0)
		vmlog_printf(d->p->log, "stopping: ACPI powerdown");
	return r;
}

static void qd_destroy(struct drv_vm *d, enum drv_kill how)
{
	switch (how) {
	case DRV_TERM:
		child_signal(&d->qemu, SIGTERM);
		break;
	case DRV_KILL:
		child_signal(&d->qemu, SIGKILL);
		break;
	case DRV_KILL_WAIT:
		child_kill_wait(&d->qemu, SIGKILL, 0);
		break;
	}
}

static bool qd_running(const struct drv_vm *d)
{
	return d->qemu.running;
}

static void qd_ready(struct drv_vm *d)
{
	save_state(d);
}

static struct qga *qd_agent(struct drv_vm *d)
{
	return d->qga;
}

static pid_t qd_pid(const struct drv_vm *d)
{
	return d->qemu.running ? d->qemu.pid : 0;
}

static int qd_adopt(struct drv_vm *d, const struct drv_found *f, const char **why)
{
	struct vm_plan *p = d->p;
	const struct vmstate *st = &f->st;

	/* QEMU first: without it there is nothing to adopt. */
	if (child_adopt(&d->qemu, p->loop, &st->qemu, on_qemu_exit, d) < 0) {
		*why = "its QEMU is gone";
		return -ESTALE;
	}
	if (st->n_shares != p->n_shares) {
		*why = "its state file does not match its definition";
		return -ESTALE;
	}
	for (size_t i = 0; i < p->n_shares; i++)
		if (child_adopt(&p->shares[i].proc, p->loop, &st->shares[i], d->ev->share_exited, d->ev->userdata) < 0) {
			/* The guest would hang on this share: not worth keeping. */
			*why = "one of its virtiofsd is gone";
			return -ESTALE;
		}
	if (!st->ready) {
		*why = "it was not fully started";
		return -ESTALE;
	}
	if (connect_channels(d) < 0) {
		*why = "its sockets do not answer";
		return -ESTALE;
	}
	vmlog_printf(p->log, "adopted by a new vmd (QEMU pid %d)", (int)d->qemu.pid);
	log_info("%s: adopted (QEMU pid %d)", p->def->name, (int)d->qemu.pid);
	return 0;
}

/* Whether something (a QEMU, a vmd) holds the run directory's lock. */
static bool dir_locked(int dirfd, const char *name)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

/* The run directories that are locked and hold a state file: VMs a
 * previous daemon started. Anything else there is left to the sweep. */
static int qd_discover(const struct host_config *host, const struct vm_options *opts, drv_found_cb cb,
		       void *userdata)
{
	_cleanup_free_ char *vms = path_join(host->run_dir, "vms");
	struct dirent *de;
	DIR *dir;

	(void)opts;
	if (!vms)
		return -ENOMEM;
	dir = opendir(vms);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dir))) {
		_cleanup_free_ char *path = NULL;
		struct drv_found f = { .driver = &driver_qemu, .where = (char *)"the running VM" };

		if (de->d_name[0] == '.' || check_name(de->d_name) || !dir_locked(dirfd(dir), de->d_name))
			continue;
		path = path_join(vms, de->d_name);
		if (path && vmstate_read(path, &f.st) == 0 && streq(f.st.def->name, de->d_name))
			cb(&f, true, userdata);
		vmstate_clear(&f.st);
	}
	closedir(dir);
	return 0;
}

static void qd_discard(const struct drv_found *f)
{
	(void)proc_id_signal(&f->st.qemu, SIGKILL);
}

static ssize_t qd_console_write(struct drv_vm *d, const void *buf, size_t n)
{
	ssize_t k;

	if (d->console_fd < 0)
		return -ENOTCONN;
	k = send(d->console_fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	return k < 0 ? -errno : k;
}

const struct vm_driver driver_qemu = {
	.name = "qemu",
	.lock_inherited = true,
	.term_action = "sending SIGTERM to QEMU",
	.kill_message = "QEMU ignored SIGTERM; killing it",
	.new = qd_new,
	.release = qd_release,
	.start_shares = qd_start_shares,
	.start = qd_start,
	.stop = qd_stop,
	.destroy = qd_destroy,
	.running = qd_running,
	.ready = qd_ready,
	.disconnect = qd_disconnect,
	.agent = qd_agent,
	.console_write = qd_console_write,
	.pid = qd_pid,
	.adopt = qd_adopt,
	.discover = qd_discover,
	.discard = qd_discard,
};
