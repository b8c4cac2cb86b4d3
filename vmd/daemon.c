/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "cli.h"
#include "control.h"
#include "defset.h"
#include "gcroot.h"
#include "hostnet.h"
#include "libvirt.h"
#include "log.h"
#include "manager.h"
#include "qemu.h"

/* EX_TEMPFAIL: "start me again"; see vmd.service. */
#define DAEMON_EXIT_RESTART 75

struct daemon {
	struct loop *loop;
	struct host_config *host;
	struct manager *manager;
	struct control *control;
	struct hostnet *net;
	struct lv *lv;
	struct loop_source *sigs;
	bool keep_running;
	bool stopping;
	int exit_code;
};

/* In the reverse order of cmd_daemon()'s setup. */
static void daemon_done(struct daemon *d)
{
	control_free(d->control);
	manager_free(d->manager);
	lv_free(d->lv);
	/* Only when the loop never ran a shutdown: a failed start. */
	hostnet_down(d->net, false);
	loop_source_freep(&d->sigs);
	loop_free(d->loop);
	host_config_free(d->host);
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -EBADF;
	size_t len;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
		return;
	len = strlen(path);
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		log_debug_errno(errno, "sd_notify: %m");
}

/* Every defined VM's closure is a GC root in <state_dir>/gcroots/, running
 * or not, so that a VM that is stopped or waiting to restart still has it;
 * a VM that left the configuration loses its root. (A VM of another host
 * is checked against this host's store as well, so its closure is rooted
 * here too.) */
static void sync_gcroots(struct daemon *d, const struct defset *set)
{
	_cleanup_free_ char *dir = path_join(d->host->state_dir, "gcroots");
	_cleanup_strv_free_ char **names = calloc(set->n + 1, sizeof(char *));
	_cleanup_strv_free_ char **targets = calloc(set->n + 1, sizeof(char *));
	size_t n = 0;
	int r;

	if (!dir || !names || !targets)
		return (void)log_error_errno(-ENOMEM, "GC roots: %m");
	for (size_t i = 0; i < set->n; i++) {
		const struct vm_def *def = set->entries[i].def;
		const char *system = def_system(def, d->host->image_system);
		struct stat st;
		char *real;

		/* Loading already checked each closure; only a symlink (a
		 * result link) needs resolving, since Nix follows a root's
		 * link one step. Store paths, the usual case, cost one lstat. */
		if (!system || lstat(system, &st) < 0)
			continue;
		real = S_ISLNK(st.st_mode) ? realpath(system, NULL) : strdup(system);
		if (!real)
			continue;
		targets[n] = real;
		names[n] = strdup(def->name);
		if (!names[n++])
			return (void)log_error_errno(-ENOMEM, "GC roots: %m");
	}
	r = gcroot_sync_dir(d->host->gcroots_dir, dir, names, targets, n);
	if (r == -ENOENT)
		log_debug("no %s: the closures get no GC roots", d->host->gcroots_dir);
	else if (r < 0)
		log_warning_errno(r, "registering GC roots for the closures in %s: %m", dir);
}

/* What this host cannot give a VM: logged, and the VM started anyway. */
static void log_fit_warnings(const struct defset *set)
{
	_cleanup_(defset_errors_clear) struct defset_errors warnings = {};
	struct host_resources res;

	host_resources_read(&res);
	defset_check_fit(set, &res, &warnings);
	for (size_t i = 0; i < warnings.n; i++)
		for (size_t j = 0; j < warnings.files[i].errors.n; j++)
			log_warning("%s: %s", warnings.files[i].file, warnings.files[i].errors.lines[j]);
}

/* Loads and validates every definition, and checks the new boot of each
 * running VM that changes; nothing changes unless all pass. */
static int reload(void *userdata, json_t **ret_summary, json_t **ret_errors)
{
	struct daemon *d = userdata;
	_cleanup_(defset_clear) struct defset set = {};
	_cleanup_(defset_errors_clear) struct defset_errors errors = {};
	char *paths[] = { d->host->definitions_dir, NULL };
	struct stat st;
	int r;

	if (stat(d->host->definitions_dir, &st) < 0 && errno == ENOENT) {
		/* No directory: no VMs. */
		r = 0;
	} else
		r = defset_load(paths, d->host, &set, &errors);
	/* A running VM is stopped for its new definition only if that can
	 * boot. */
	if (r == 0)
		r = manager_check(d->manager, &set, &errors);
	if (r < 0) {
		log_error("reload refused: the definitions have errors; nothing was changed:");
		defset_errors_print(&errors, stderr);
		if (ret_errors)
			*ret_errors = defset_errors_json(&errors);
		return -EINVAL;
	}
	log_fit_warnings(&set);
	/* Hub peers of VMs that left go now; the VMs follow. */
	hostnet_sync(d->net, &set);
	/* Before manager_apply(), which takes the definitions. */
	sync_gcroots(d, &set);
	r = manager_apply(d->manager, &set, ret_summary);
	if (r < 0)
		return log_error_errno(r, "applying the definitions: %m");
	log_info("definitions loaded from %s: %zu VMs started", d->host->definitions_dir,
		 manager_launched(d->manager));
	return 0;
}

static void on_shutdown_done(void *userdata, int error, const char *message)
{
	struct daemon *d = userdata;

	(void)error;
	(void)message;
	/* Nothing runs on the networks any more, or everything stays. */
	hostnet_down(d->net, d->keep_running || d->exit_code == DAEMON_EXIT_RESTART);
	d->net = NULL;
	loop_exit(d->loop, d->exit_code);
}

static void on_signal(struct loop_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct daemon *d = userdata;

	(void)s;
	if (si->ssi_signo == SIGHUP) {
		log_info("SIGHUP: reloading");
		notify("RELOADING=1");
		reload(d, NULL, NULL);
		notify("READY=1");
		return;
	}
	if (d->stopping) {
		log_info("%s again: killing every VM", strsignal((int)si->ssi_signo));
		manager_kill_all(d->manager);
		return;
	}
	d->stopping = true;
	notify("STOPPING=1");
	/* SIGUSR2: leave for an upgrade. The VMs stay; the exit status tells
	 * systemd (RestartForceExitStatus=75) to start the next daemon, which
	 * adopts them. */
	if (si->ssi_signo == SIGUSR2) {
		log_info("SIGUSR2: exiting for a restart, leaving the VMs running");
		d->exit_code = DAEMON_EXIT_RESTART;
		manager_shutdown(d->manager, true, on_shutdown_done, d);
		return;
	}
	if (d->keep_running)
		log_info("%s: exiting, leaving the VMs running for the next daemon", strsignal((int)si->ssi_signo));
	else
		log_info("%s: stopping every VM", strsignal((int)si->ssi_signo));
	manager_shutdown(d->manager, d->keep_running, on_shutdown_done, d);
}

/* "vmd shutdown": what SIGTERM does, even for a daemon started with
 * --keep-running: the host is going down (vmd-guests.service asks). */
static void on_shutdown_request(void *userdata)
{
	struct daemon *d = userdata;

	if (d->stopping)
		return;
	d->stopping = true;
	d->keep_running = false;
	notify("STOPPING=1");
	log_info("shutdown requested: stopping every VM");
	manager_shutdown(d->manager, false, on_shutdown_done, d);
}

/* One daemon per run_dir, state_dir and keys_dir: <dir>/vmd.lock in each,
 * flocked before anything is created or swept. Two daemons on one state_dir
 * (with different run_dirs) would each start every VM and sweep the other's
 * ephemeral disks. "vmd run" takes none of these: it shares the directories
 * with the daemon, and the per-VM lock in <run_dir>/vms/<vm> keeps them
 * apart. A directory given twice (keys_dir = state_dir) is one lock. */
struct daemon_locks {
	int fds[3];
};

static void daemon_locks_done(struct daemon_locks *l)
{
	for (size_t i = 0; i < ELEMENTSOF(l->fds); i++)
		l->fds[i] = safe_close(l->fds[i]);
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int lock_dir(const char *dir, mode_t mode, const struct daemon_locks *held, int *ret)
{
	_cleanup_free_ char *path = path_join(dir, "vmd.lock");
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!path)
		return -ENOMEM;
	r = mkdir_p(dir, mode);
	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < ELEMENTSOF(held->fds); i++)
		if (held->fds[i] >= 0 && same_file(fd, held->fds[i]))
			return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	*ret = TAKE_FD(fd);
	return 0;
}

static int take_daemon_locks(const struct host_config *host, struct daemon_locks *l)
{
	const struct {
		const char *field, *dir;
		mode_t mode;
	} dirs[] = {
		{ "run_dir", host->run_dir, 0755 },
		{ "state_dir", host->state_dir, 0755 },
		/* keydir.c's mode for it. */
		{ "keys_dir", host->keys_dir, 0700 },
	};

	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		int r = lock_dir(dirs[i].dir, dirs[i].mode, l, &l->fds[i]);

		if (r == -EBUSY)
			return log_error_errno(r, "another vmd daemon already uses %s (%s)",
					       dirs[i].dir, dirs[i].field);
		if (r < 0)
			return log_error_errno(r, "%s: locking %s/vmd.lock: %m", dirs[i].field, dirs[i].dir);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmd daemon [-c SETTINGS] [--keep-running] [-v]\n\n"
		"Supervises every definition in definitions_dir: starts the autostart VMs,\n"
		"restarts them by their restart policy, applies changes on SIGHUP or\n"
		"\"vmd reload\", and answers the control socket <run_dir>/vmd.sock.\n"
		"SIGTERM stops every VM gracefully, then exits; with --keep-running it\n"
		"exits at once and leaves the VMs running for the next daemon, which\n"
		"adopts them. SIGUSR2 does that too, whatever the option, and exits\n"
		"with status 75 so that systemd starts the next daemon right away.\n");
}

int cmd_daemon(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "keep-running", no_argument, NULL, 'k' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	static const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR2 };
	/* Before d, to outlive its teardown: the locks, as long as anything of
	 * this daemon is left; the binaries, which opts lends to the VMs. */
	_cleanup_(daemon_locks_done) struct daemon_locks locks = { .fds = { -EBADF, -EBADF, -EBADF } };
	_cleanup_(vm_tools_done) struct vm_tools tools = {};
	_cleanup_(daemon_done) struct daemon d = { .exit_code = EXIT_OK };
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:kvh", options, NULL)) >= 0)
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			d.keep_running = true;
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	if (optind < argc) {
		usage(stderr);
		return EXIT_BAD_INPUT;
	}
	if (cli_load_host(config, &d.host) < 0)
		return EXIT_BAD_INPUT;

	if (take_daemon_locks(d.host, &locks) < 0)
		return EXIT_RUNTIME;
	if (vm_tools_resolve(d.host, d.host->accel, NULL, &tools) < 0)
		return EXIT_RUNTIME;
	log_info("accelerator: %s (%s)", accel_names[tools.accel], tools.accel_reason);

	r = loop_new(&d.loop);
	if (r == 0)
		r = loop_add_signals(d.loop, signals, ELEMENTSOF(signals), on_signal, &d, &d.sigs);
	if (r < 0) {
		log_error_errno(r, "setting up: %m");
		return EXIT_RUNTIME;
	}
	/* Bridges and hubs before any VM; a failure undoes itself. */
	r = hostnet_up(d.loop, d.host, true, &d.net);
	if (r < 0) {
		log_error_errno(r, "setting up the host networks: %m");
		return EXIT_RUNTIME;
	}
	/* libvirt's event loop runs in ours; connections open as needed. */
	r = lv_new(d.loop, &d.lv);
	if (r < 0) {
		log_error_errno(r, "setting up libvirt: %m");
		return EXIT_RUNTIME;
	}
	struct vm_options opts = vm_tools_options(&tools);
	opts.save_state = true;
	opts.async_unpack = true;
	opts.net = d.net;
	opts.lv = d.lv;
	r = manager_new(d.loop, d.host, &opts, &d.manager);
	if (r < 0) {
		log_error_errno(r, "setting up: %m");
		return EXIT_RUNTIME;
	}
	/* The socket before any VM: failing here leaves nothing running. */
	r = control_new(d.loop, d.manager, d.host, reload, &d, &d.control);
	if (r < 0) {
		log_error_errno(r, "control socket %s/vmd.sock: %m", d.host->run_dir);
		return EXIT_RUNTIME;
	}
	control_set_shutdown(d.control, on_shutdown_request, &d);
	/* VMs a previous daemon left running first, then the configuration
	 * decides what else runs. */
	r = manager_adopt_all(d.manager);
	if (r < 0)
		log_error_errno(r, "adopting running VMs: %m");
	if (reload(&d, NULL, NULL) < 0)
		log_error("running with the VMs adopted so far; fix the definitions and reload");
	/* Every autostart VM has been launched (not necessarily ready). */
	notify("READY=1");
	log_info("ready; control socket %s", control_path(d.control));
	return loop_run(d.loop);
}
