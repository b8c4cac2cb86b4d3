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
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "hostnet.h"
#include "link.h"
#include "log.h"
#include "guestconf.h"
#include "qemu.h"
#include "qmp.h"
#include "driver.h"

/* QEMU's fd numbers for its pre-bound sockets, the run-dir lock, the tap
 * queues and the disk images; after those, its virtiofsd connections and
 * the vhost-net fds (one per tap queue). */
enum { QFD_QMP = 3, QFD_CONSOLE, QFD_NOTIFY, QFD_AGENT, QFD_LOCK, QFD_TAP, QFD_DISK = QFD_TAP + TAP_QUEUES_MAX };
/* Disk i has QFD_DISK + 2i, and its base (an overlay's) QFD_DISK + 2i + 1.
 * Definitions have at most 32; spawn() passes at most SPAWN_FDS_MAX fds,
 * which leaves room for 65 shares and the vhost-net fds after them. */
#define QEMU_DISKS_MAX 64

static int qfd_fs(size_t n_images, size_t i)
{
	return QFD_DISK + 2 * (int)n_images + (int)i;
}

static int qfd_vhost(size_t n_images, size_t n_shares, unsigned i)
{
	return QFD_DISK + 2 * (int)n_images + (int)n_shares + (int)i;
}

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
	_cleanup_close_ int lfd = -EBADF, dirfd = -EBADF;
	struct virtiofsd_config c = {
		.binary = p->opts->virtiofsd,
		.source = s->mountpoint,
		.fd = 3,
		.cache = s->cache,
		.read_only = s->read_only,
		/* The store: Nix makes every path in it readable by all. */
		.world_readable = streq(s->tag, "nix-store"),
	};
	int r;

	dirfd = vm_share_open(p, s);
	if (dirfd < 0)
		return dirfd;
	if (mkdir(s->mountpoint, 0700) < 0 && errno != EEXIST)
		return log_error_errno(errno, "%s: creating %s: %m", p->def->name, s->mountpoint);
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
	struct spawn_dir dir = { dirfd, s->mountpoint, s->read_only };
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
		.dir = &dir,
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

static bool read_channel(struct drv_vm *d, int fd, struct loop_source **src,
			 void (*feed)(void *userdata, const char *buf, size_t n));

static void on_qemu_exit(struct child *c, const siginfo_t *si, void *userdata)
{
	struct drv_vm *d = userdata;
	const char *why = d->shutdown_reason;
	_cleanup_free_ char *detail = NULL, *early = NULL;
	enum drv_end end = DRV_END_EXITED;
	char buf[128];

	(void)c;
	/* What the guest said last (an image's EXIT_STATUS=, its final
	 * console lines) may still wait in the sockets: take it first. */
	for (int i = 0; i < 64 && d->notify_src && read_channel(d, d->notify_fd, &d->notify_src, d->ev->notify); i++)
		;
	for (int i = 0; i < 64 && d->console_src && read_channel(d, d->console_fd, &d->console_src, d->ev->console);
	     i++)
		;
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

/* Console output and notify data: what is there, passed on. False once
 * nothing more is there for now. */
static bool read_channel(struct drv_vm *d, int fd, struct loop_source **src,
			 void (*feed)(void *userdata, const char *buf, size_t n))
{
	char buf[16384];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0) {
		loop_source_freep(src);
		return false;
	}
	feed(d->ev->userdata, buf, (size_t)n);
	return true;
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

/* vmd's copies of the listening sockets, of a tap's queue fds, of the
 * connections to the virtiofsd and of the vhost-net fds: closed once QEMU
 * holds them, so the tap lives exactly as long as that QEMU. */
struct qemu_fds {
	int chan[N_CHANNELS];
	int tap[TAP_QUEUES_MAX];
	unsigned n_taps;
	int vhost[TAP_QUEUES_MAX];
	unsigned n_vhost;
	int *fs;
	size_t n_fs;
	int disk[2 * QEMU_DISKS_MAX]; /* each image, then its base or -EBADF */
	size_t n_disks;
};

static void qemu_fds_done(struct qemu_fds *f)
{
	for (size_t i = 0; i < N_CHANNELS; i++)
		f->chan[i] = safe_close(f->chan[i]);
	for (unsigned i = 0; i < f->n_taps; i++)
		safe_close(f->tap[i]);
	for (unsigned i = 0; i < f->n_vhost; i++)
		safe_close(f->vhost[i]);
	for (size_t i = 0; i < f->n_fs; i++)
		safe_close(f->fs[i]);
	for (size_t i = 0; i < f->n_disks; i++)
		safe_close(f->disk[i]);
	f->n_taps = f->n_vhost = 0;
	f->n_fs = f->n_disks = 0;
	f->fs = mfree(f->fs);
}

/* QEMU runs as host->qemu_user, with the kvm group (for /dev/kvm) as its
 * only supplementary group where that group exists. Never root. */
static int qemu_user(const struct vm_plan *p, struct spawn_user *u, gid_t *kvm)
{
	const char *name = p->host->qemu_user;
	struct passwd *pw;
	struct group *gr;

	errno = 0;
	pw = getpwnam(name);
	if (!pw && errno != 0 && errno != ENOENT && errno != ESRCH)
		return log_error_errno(errno, "%s: looking up QEMU's user %s: %m", p->def->name, name);
	if (!pw)
		return log_error_errno(ENOENT,
				       "%s: QEMU's user %s does not exist; create it with \"useradd --system "
				       "--user-group --groups kvm --no-create-home --home-dir /nonexistent --shell "
				       "/usr/sbin/nologin %s\" (or name another in the settings' qemu_user)",
				       p->def->name, name, name);
	if (pw->pw_uid == 0 || pw->pw_gid == 0)
		return log_error_errno(EPERM, "%s: QEMU's user %s is root (uid or group 0); it must be an "
				       "unprivileged user", p->def->name, name);
	*u = (struct spawn_user){ .uid = pw->pw_uid, .gid = pw->pw_gid };
	gr = getgrnam("kvm");
	if (gr && gr->gr_gid != 0) {
		*kvm = gr->gr_gid;
		u->groups = kvm;
		u->n_groups = 1;
	}
	return 0;
}

/* Each image as QEMU gets it: opened now, not when it was made or checked
 * (during a restart's backoff), so that nothing swapped in since is
 * followed. */
static int open_disks(struct vm_plan *p, struct qemu_fds *qf)
{
	if (p->n_images > QEMU_DISKS_MAX)
		return log_error_errno(E2BIG, "%s: more than %d disks", p->def->name, QEMU_DISKS_MAX);
	for (size_t i = 0; i < p->n_images; i++) {
		const struct def_disk *dk = p->images[i].disk;
		int fd = vm_image_open(p, i);

		if (fd < 0)
			return fd;
		qf->disk[qf->n_disks++] = fd;
		/* The base is the definition's own path (checked when the
		 * boot was prepared): opened as it is, read-only. */
		fd = dk->base ? open(dk->base, O_RDONLY | O_NOCTTY | O_CLOEXEC) : -EBADF;
		if (dk->base && fd < 0)
			return log_error_errno(errno, "%s: disk %s: opening its base %s: %m", p->def->name, dk->name,
					       dk->base);
		qf->disk[qf->n_disks++] = fd;
	}
	return 0;
}

/* The pure part: the plan as QEMU's configuration and argv, with the fd
 * numbers QEMU will have. */
int qemu_plan_argv(const struct vm_plan *p, unsigned n_taps, bool vhost, char ***ret)
{
	_cleanup_free_ char *kernel = path_join(p->system, "kernel"), *initrd = path_join(p->system, "initrd");
	_cleanup_free_ char *conf = p->image_conf ? path_join(p->dir, IMAGE_CONF_FILE) : NULL;
	_cleanup_free_ struct qemu_fs *fs = calloc(p->n_shares + 1, sizeof(*fs));
	_cleanup_free_ struct qemu_disk *disks = calloc(p->n_images + 1, sizeof(*disks));
	int tap_numbers[TAP_QUEUES_MAX], vhost_numbers[TAP_QUEUES_MAX];
	char mac_str[18];

	if (!kernel || !initrd || !fs || !disks || (p->image_conf && !conf))
		return -ENOMEM;
	for (size_t i = 0; i < p->n_shares; i++)
		fs[i] = (struct qemu_fs){ p->shares[i].tag, qfd_fs(p->n_images, i) };
	for (size_t i = 0; i < p->n_images; i++) {
		const struct def_disk *dk = p->images[i].disk;

		disks[i] = (struct qemu_disk){
			.name = dk->name,
			.fd = QFD_DISK + 2 * (int)i,
			.ephemeral = !dk->persistent,
			.base_format = dk->base ? disk_format_names[dk->base_format] : NULL,
			.base_fd = QFD_DISK + 2 * (int)i + 1,
			.base_blockdev = p->images[i].base_blockdev,
		};
	}
	for (unsigned i = 0; i < n_taps; i++) {
		tap_numbers[i] = QFD_TAP + (int)i;
		vhost_numbers[i] = qfd_vhost(p->n_images, p->n_shares, i);
	}
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
		.vhost_fds = vhost && n_taps > 0 ? vhost_numbers : NULL,
		.fw_cfg_file = conf,
	};
	return qemu_argv(&qc, ret);
}

/* What QEMU sees of the host: its programs and libraries, the store (the
 * closure's kernel and initrd; QEMU itself on NixOS) and a few devices,
 * read-only, in a root of its own. Not the run, state, key or log
 * directories: everything of those it needs comes as an fd. A QEMU
 * outside /usr and the store brings its own directory, and a kernel or
 * initrd that the closure links to from outside the store the file
 * itself. */
static bool at_or_below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

struct qemu_root {
	const char *paths[20];
	char *qemu_dir, *kernel, *initrd, *conf;
};

static void qemu_root_done(struct qemu_root *r)
{
	free(r->conf);
	free(r->qemu_dir);
	free(r->kernel);
	free(r->initrd);
}

/* The file a closure's part resolves to, if QEMU would not see it
 * otherwise (NULL: it would, or it is not there: QEMU then says so). */
static char *outside(const struct vm_plan *p, const char *part)
{
	_cleanup_free_ char *path = path_join(p->system, part);
	char *real = path ? realpath(path, NULL) : NULL;

	if (real && (at_or_below(real, "/usr") || at_or_below(real, p->host->store_dir)))
		real = mfree(real);
	return real;
}

/* An image VM's fw_cfg entry, in the run directory, readable by QEMU's
 * user alone (bound into its root). */
static int write_image_conf(const struct vm_plan *p, const struct spawn_user *user)
{
	_cleanup_close_ int dirfd = open(p->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_close_ int fd = -EBADF;
	size_t n = strlen(p->image_conf);
	int r;

	if (dirfd < 0)
		return log_error_errno(errno, "%s: opening %s: %m", p->def->name, p->dir);
	(void)unlinkat(dirfd, IMAGE_CONF_FILE, 0);
	fd = openat(dirfd, IMAGE_CONF_FILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
	if (fd < 0 || fchown(fd, user->uid, user->gid) < 0)
		return log_error_errno(errno, "%s: writing %s/%s: %m", p->def->name, p->dir, IMAGE_CONF_FILE);
	r = write_all(fd, p->image_conf, n);
	if (r < 0)
		return log_error_errno(r, "%s: writing %s/%s: %m", p->def->name, p->dir, IMAGE_CONF_FILE);
	return 0;
}

static int qemu_root(const struct vm_plan *p, struct qemu_root *r)
{
	const char *store = p->host->store_dir;
	size_t n = 0;

	if (!at_or_below(p->opts->qemu, "/usr") && !at_or_below(p->opts->qemu, store)) {
		r->qemu_dir = strdup(p->opts->qemu);
		if (!r->qemu_dir)
			return -ENOMEM;
		*strrchr(r->qemu_dir, '/') = 0;
	}
	r->kernel = outside(p, "kernel");
	r->initrd = outside(p, "initrd");
	r->paths[n++] = "/usr";
	r->paths[n++] = "/lib";
	r->paths[n++] = "/lib64";
	r->paths[n++] = "/etc/ld.so.cache";
	r->paths[n++] = store;
	if (r->qemu_dir && *r->qemu_dir)
		r->paths[n++] = r->qemu_dir;
	if (r->kernel)
		r->paths[n++] = r->kernel;
	if (r->initrd)
		r->paths[n++] = r->initrd;
	if (p->image_conf) {
		r->conf = path_join(p->dir, IMAGE_CONF_FILE);
		if (!r->conf)
			return -ENOMEM;
		r->paths[n++] = r->conf;
	}
	r->paths[n++] = "/dev/null";
	r->paths[n++] = "/dev/zero";
	r->paths[n++] = "/dev/urandom";
	r->paths[n++] = "/dev/random";
	if (p->opts->accel == ACCEL_KVM)
		r->paths[n++] = "/dev/kvm";
	r->paths[n] = NULL;
	return 0;
}

static int qd_start(struct drv_vm *d)
{
	struct vm_plan *p = d->p;
	_cleanup_(qemu_fds_done) struct qemu_fds qf = {};
	_cleanup_strv_free_ char **argv = NULL;
	_cleanup_free_ char *pidfile = NULL;
	_cleanup_free_ struct spawn_fd *fds = NULL;
	_cleanup_(qemu_root_done) struct qemu_root root = {};
	struct spawn_user user;
	gid_t kvm;
	size_t n_fds = 0;
	int r;

	for (size_t i = 0; i < N_CHANNELS; i++)
		qf.chan[i] = -EBADF;
	r = qemu_user(p, &user, &kvm);
	if (r < 0)
		return r;
	if (p->image_conf) {
		r = write_image_conf(p, &user);
		if (r < 0)
			return r;
	}
	r = qemu_root(p, &root);
	if (r < 0)
		return r;
	for (size_t i = 0; i < N_CHANNELS; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s.sock", p->dir, chan_names[i]);

		if (!path)
			return -ENOMEM;
		qf.chan[i] = unix_listen(path);
		if (qf.chan[i] < 0)
			return log_error_errno(qf.chan[i], "%s: binding %s: %m", p->def->name, path);
	}
	/* Each virtiofsd listens already (its socket was bound before it
	 * started), so the connection waits in its backlog. */
	qf.fs = calloc(p->n_shares + 1, sizeof(int));
	if (!qf.fs)
		return -ENOMEM;
	for (; qf.n_fs < p->n_shares; qf.n_fs++) {
		qf.fs[qf.n_fs] = unix_connect(p->shares[qf.n_fs].socket);
		if (qf.fs[qf.n_fs] < 0)
			return log_error_errno(qf.fs[qf.n_fs], "%s: connecting to %s: %m", p->def->name,
					       p->shares[qf.n_fs].socket);
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
		/* vhost-net with KVM where the host has it; any failure to
		 * open it only means no vhost. */
		for (unsigned i = 0; p->opts->accel == ACCEL_KVM && i < n; i++) {
			int fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);

			if (fd < 0)
				break;
			qf.vhost[qf.n_vhost++] = fd;
		}
		if (qf.n_vhost < n)
			for (; qf.n_vhost > 0; qf.n_vhost--)
				safe_close(qf.vhost[qf.n_vhost - 1]);
	}
	r = open_disks(p, &qf);
	if (r < 0)
		return r;
	r = qemu_plan_argv(p, qf.n_taps, qf.n_vhost > 0, &argv);
	if (r < 0)
		return r;

	fds = calloc(6 + qf.n_taps + qf.n_disks + qf.n_fs + qf.n_vhost, sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	for (size_t i = 0; i < N_CHANNELS; i++)
		fds[n_fds++] = (struct spawn_fd){ qf.chan[i], QFD_QMP + (int)i };
	fds[n_fds++] = (struct spawn_fd){ p->lock_fd, QFD_LOCK };
	for (unsigned i = 0; i < qf.n_taps; i++)
		fds[n_fds++] = (struct spawn_fd){ qf.tap[i], QFD_TAP + (int)i };
	for (size_t i = 0; i < qf.n_disks; i++)
		if (qf.disk[i] >= 0)
			fds[n_fds++] = (struct spawn_fd){ qf.disk[i], QFD_DISK + (int)i };
	for (size_t i = 0; i < qf.n_fs; i++)
		fds[n_fds++] = (struct spawn_fd){ qf.fs[i], qfd_fs(p->n_images, i) };
	for (unsigned i = 0; i < qf.n_vhost; i++)
		fds[n_fds++] = (struct spawn_fd){ qf.vhost[i], qfd_vhost(p->n_images, qf.n_fs, i) };
	/* Not for QEMU's use: its lifetime holds the image's cache entry. */
	if (p->image_lock_fd >= 0)
		fds[n_fds++] = (struct spawn_fd){ p->image_lock_fd, qfd_vhost(p->n_images, qf.n_fs, qf.n_vhost) };
	struct spawn_opts o = {
		.argv = argv,
		.fds = fds,
		.n_fds = n_fds,
		.stdin_fd = -1,
		.stdout_fd = p->log->fd,
		.stderr_fd = p->log->fd,
		.profile = SANDBOX_QEMU,
		.die_with_parent = p->opts->die_with_parent,
		.root_paths = root.paths,
		/* Its taps, sockets and vhost-net are fds: no host network. */
		.no_network = true,
		.user = &user,
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
