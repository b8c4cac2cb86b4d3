/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt driver: the same prepared VM (lock, disks, key directories,
 * WireGuard peer, kernel command line) started as a transient libvirt
 * domain instead of vmd's own QEMU and virtiofsd. libvirt runs the
 * processes; vmd follows the domain's lifecycle events, reads its console
 * and io.vmd.notify through libvirt streams, runs commands through
 * libvirt's guest-agent API, and applies its own restart policy. On this
 * host each virtiofsd libvirt starts goes through "vmd virtiofsd-exec",
 * which confines it as vmd's own spawn() would and leaves its pid where
 * vmd watches it: a dead virtiofsd ends the VM, as with the QEMU driver. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base64.h"
#include "domxml.h"
#include "link.h"
#include "log.h"
#include "qga.h"
#include "vm-internal.h"

#define DOMAIN_PREFIX "vmd-"
#define AGENT_TIMEOUT_S 10
#define INSTANCE_ID_LEN VMLV_INSTANCE_ID_LEN

static void on_ended(struct lv_dom *d, enum lv_end why, const char *detail, void *userdata);
static void on_console(struct lv_dom *d, const char *buf, size_t n, void *userdata);
static void on_notify(struct lv_dom *d, const char *buf, size_t n, void *userdata);
static void on_link(struct lv_dom *d, bool up, void *userdata);

static const struct lv_dom_ops dom_ops = {
	.ended = on_ended,
	.console = on_console,
	.notify = on_notify,
	.link = on_link,
};

/* Which vmd made a domain: a random id kept in <state_dir>/instance-id,
 * so that two vmds (two state directories) on one libvirtd never take
 * each other's domains. */
int vmlv_instance_id(const struct host_config *host, char out[VMLV_INSTANCE_ID_LEN + 1])
{
	_cleanup_free_ char *path = path_join(host->state_dir, "instance-id"), *text = NULL;
	uint8_t rnd[INSTANCE_ID_LEN / 2];
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, 256, &text, NULL);
	if (r == 0 && strlen(text) >= INSTANCE_ID_LEN && strspn(text, "0123456789abcdef") >= INSTANCE_ID_LEN) {
		memcpy(out, text, INSTANCE_ID_LEN);
		out[INSTANCE_ID_LEN] = 0;
		return 0;
	}
	if (r < 0 && r != -ENOENT)
		return r;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return -EIO;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	r = mkdir_p(host->state_dir, 0755);
	if (r < 0)
		return r;
	{
		_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
		_cleanup_close_ int fd = -EBADF;
		char line[INSTANCE_ID_LEN + 2];

		if (!tmp)
			return -ENOMEM;
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		snprintf(line, sizeof(line), "%s\n", out);
		r = write_all(fd, line, strlen(line));
		/* Another vmd may have made one meanwhile: the first stands. */
		if (r == 0 && link(tmp, path) < 0 && errno != EEXIST)
			r = -errno;
		(void)unlink(tmp);
		if (r < 0)
			return r;
	}
	return vmlv_instance_id(host, out);
}

char *vmlv_domain_name(const char *vm)
{
	return xasprintf(DOMAIN_PREFIX "%s", vm);
}

static const char *conn_uri(const struct vm *vm)
{
	const struct host_remote *h = vm->def->host ? host_remote_find(vm->host, vm->def->host) : NULL;

	return h ? h->libvirt_uri : vm->host->libvirt_uri;
}

/* What the domain's metadata says of this boot, for the next daemon. */
static char *metadata_text(const struct vm *vm)
{
	char id[INSTANCE_ID_LEN + 1];
	_cleanup_free_ char *json = NULL;
	struct vmstate st = {
		.def = vm->def,
		.started_at = vm->started_at,
		.boot_usec = vm->ready ? vm->t_ready - vm->t_start : 0,
		.ready = vm->ready,
		.restarts = vm->restarts,
		.instance = id,
	};

	if (vmlv_instance_id(vm->host, id) < 0)
		return NULL;
	json = vmstate_format(&st);
	return json ? base64_encode(json, strlen(json)) : NULL;
}

static char *shell_quote(const char *s)
{
	size_t n = 3;
	char *out, *o;

	for (const char *p = s; *p; p++)
		n += *p == '\'' ? 4 : 1;
	out = o = malloc(n);
	if (!out)
		return NULL;
	*o++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else
			*o++ = *p;
	}
	*o++ = '\'';
	*o = 0;
	return out;
}

static char *self_exe(void)
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	char *d;

	if (n <= 0)
		return NULL;
	buf[n] = 0;
	/* Replaced under us (an upgrade): the new binary at the same path. */
	d = strstr(buf, " (deleted)");
	if (d && d[10] == 0)
		*d = 0;
	return strdup(buf);
}

/* <run_dir>/vms/<vm>/fsN-virtiofsd: what libvirt runs as this share's
 * virtiofsd. */
static int write_wrapper(struct vm *vm, size_t i, char **ret)
{
	struct vm_share *s = &vm->shares[i];
	_cleanup_free_ char *path = xasprintf("%s/fs%zu-virtiofsd", vm->dir, i), *exe = self_exe();
	_cleanup_free_ char *qexe = NULL, *qpid = NULL, *qfsd = NULL, *text = NULL;
	_cleanup_close_ int fd = -EBADF;
	int r;

	if (!path || !exe)
		return -ENOMEM;
	qexe = shell_quote(exe);
	qpid = shell_quote(s->pidfile);
	qfsd = shell_quote(vm->opts.virtiofsd);
	if (!qexe || !qpid || !qfsd)
		return -ENOMEM;
	text = xasprintf("#!/bin/sh\n# vmd: libvirt runs this as the virtiofsd of VM %s for %s.\n"
			 "exec %s virtiofsd-exec --pidfile=%s%s -- %s \"$@\"\n",
			 vm->def->name, s->tag, qexe, qpid, s->read_only ? " --read-only" : "", qfsd);
	if (!text)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0700);
	if (fd < 0)
		return -errno;
	r = write_all(fd, text, strlen(text));
	if (r < 0)
		return r;
	*ret = TAKE_PTR(path);
	return 0;
}

static int write_uri(struct vm *vm)
{
	_cleanup_free_ char *path = path_join(vm->dir, VMLV_URI_FILE), *line = xasprintf("%s\n", conn_uri(vm));
	_cleanup_close_ int fd = -EBADF;

	if (!path || !line)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	return write_all(fd, line, strlen(line));
}

/* QEMU runs as libvirt's qemu user, which must reach the images: the
 * directories vmd made down to them may be searched (not listed) by
 * others. libvirt's DAC driver then labels the images themselves. */
static int make_searchable(const struct vm *vm, const char *image)
{
	_cleanup_free_ char *dir = strdup(image);
	size_t top = strlen(vm->host->state_dir);

	if (!dir)
		return -ENOMEM;
	for (char *slash = strrchr(dir, '/'); slash && (size_t)(slash - dir) >= top; slash = strrchr(dir, '/')) {
		struct stat st;

		*slash = 0;
		if (stat(dir, &st) < 0)
			return -errno;
		if ((st.st_mode & 0011) != 0011 && chmod(dir, (st.st_mode & 07777) | 0011) < 0)
			return -errno;
	}
	return 0;
}

/* The virtiofsd that the wrappers started, from their pid files. */
static int follow_shares(struct vm *vm)
{
	for (size_t i = 0; i < vm->n_shares; i++) {
		_cleanup_free_ char *text = NULL;
		struct proc_id id;
		int pid, r;

		r = read_file(vm->shares[i].pidfile, 64, &text, NULL);
		if (r < 0)
			return r;
		if (sscanf(text, "%d", &pid) != 1 || pid <= 1)
			return -EBADMSG;
		r = proc_id_get(pid, &id);
		if (r == 0)
			r = vm_adopt_share(vm, &vm->shares[i], &id);
		if (r < 0)
			return r;
	}
	return 0;
}

static int agent_call(void *userdata, const char *cmd, char **ret_reply, const char **ret_error)
{
	struct vm *vm = userdata;
	int r;

	if (!vm->dom)
		return -ENOTCONN;
	r = lv_dom_agent(vm->dom, cmd, AGENT_TIMEOUT_S, ret_reply);
	if (r < 0)
		*ret_error = lv_error();
	return r;
}

static int get_conn(struct vm *vm, struct lv_conn **ret)
{
	int r;

	if (!vm->opts.lv)
		return log_error_errno(EOPNOTSUPP, "%s: the libvirt driver is not set up here", vm->def->name);
	r = lv_conn_get(vm->opts.lv, conn_uri(vm), false, ret);
	if (r < 0)
		return log_error_errno(r, "%s: libvirt %s: %m", vm->def->name, conn_uri(vm));
	if (!lv_conn_is_up(*ret))
		return log_error_errno(ENOTCONN, "%s: libvirt %s is not reachable now (vmd keeps trying)", vm->def->name,
				       conn_uri(vm));
	return 0;
}

/* A closure built here must have been copied to the other host too. */
static int check_remote_closure(struct vm *vm, struct lv_conn *c)
{
	static const char *const parts[] = { "kernel", "initrd", "init", NULL };
	const char *missing = NULL;
	int r = lv_check_files(c, vm->system, parts, &missing);

	if (r == -ENOENT)
		return log_error_errno(r, "%s: the closure %s is not on host %s (%s is missing there); copy it with "
					  "\"nix copy --to ssh://HOST %s\"",
				       vm->def->name, vm->system, vm->def->host, missing ? missing : vm->system,
				       vm->system);
	if (r < 0)
		return log_error_errno(r, "%s: checking for the closure on host %s: %s", vm->def->name, vm->def->host,
				       lv_error());
	return 0;
}

static bool want_kvm(struct vm *vm, struct lv_conn *c)
{
	const struct host_remote *h = vm->def->host ? host_remote_find(vm->host, vm->def->host) : NULL;

	if (!h)
		return vm->opts.accel == ACCEL_KVM;
	if (h->accel != ACCEL_AUTO)
		return h->accel == ACCEL_KVM;
	return lv_has_kvm(c) > 0;
}

int vmlv_start(struct vm *vm)
{
	const struct host_remote *remote = vm->def->host ? host_remote_find(vm->host, vm->def->host) : NULL;
	_cleanup_free_ struct domxml_fs *fs = calloc(vm->n_shares + 1, sizeof(*fs));
	_cleanup_free_ struct domxml_disk *disks = calloc(vm->n_images + 1, sizeof(*disks));
	_cleanup_free_ char *kernel = path_join(vm->system, "kernel"), *initrd = path_join(vm->system, "initrd");
	_cleanup_free_ char *name = vmlv_domain_name(vm->def->name), *meta = NULL, *xml = NULL;
	_cleanup_strv_free_ char **wrappers = NULL;
	char tap[LINK_NAME_MAX + 1], mac[18];
	struct lv_conn *c;
	int r;

	if (!fs || !disks || !kernel || !initrd || !name)
		return -ENOMEM;
	r = get_conn(vm, &c);
	if (r < 0)
		return r;
	if (remote) {
		r = check_remote_closure(vm, c);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < vm->n_shares; i++) {
		char *w = NULL;

		if (!remote) {
			r = write_wrapper(vm, i, &w);
			if (r < 0)
				return log_error_errno(r, "%s: writing the virtiofsd wrapper in %s: %m", vm->def->name, vm->dir);
			r = strv_consume(&wrappers, w);
			if (r < 0)
				return r;
		}
		fs[i] = (struct domxml_fs){
			.tag = vm->shares[i].tag,
			.source = vm->shares[i].source,
			.binary = remote ? (remote->virtiofsd ? remote->virtiofsd : vm->host->virtiofsd) : w,
			.cache = vm->shares[i].cache,
		};
	}
	for (size_t i = 0; i < vm->n_images; i++) {
		r = make_searchable(vm, vm->images[i].path);
		if (r < 0)
			return log_error_errno(r, "%s: letting libvirt's QEMU reach %s: %m", vm->def->name,
					       vm->images[i].path);
		disks[i] = (struct domxml_disk){ vm->images[i].disk->name, vm->images[i].path,
						 vm->images[i].disk->base != NULL, !vm->images[i].disk->persistent };
	}
	meta = metadata_text(vm);
	if (!meta)
		return log_error_errno(ENOMEM, "%s: the domain's metadata (instance id in %s): %m", vm->def->name,
				       vm->host->state_dir);
	struct domxml_config dc = {
		.name = name,
		.kvm = want_kvm(vm, c),
		.vcpus = vm->def->vcpus,
		.memory_mib = vm->def->memory_mib,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = vm->cmdline,
		.fs = fs,
		.n_fs = vm->n_shares,
		.disks = disks,
		.n_disks = vm->n_images,
		.metadata = meta,
	};
	if (vm->def->network) {
		uint8_t m[6];

		def_mac(vm->def, m);
		mac_format(m, mac);
		link_name_for_vm(vm->def->name, tap);
		dc.bridge = vm->def->network->bridge;
		dc.mac = mac;
		dc.tap = tap;
		dc.queues = vm->def->vcpus < TAP_QUEUES_MAX ? vm->def->vcpus : TAP_QUEUES_MAX;
	}
	r = domxml_build(&dc, &xml);
	if (r < 0)
		return r;
	/* So that a next daemon knows to look there (and load libvirt). */
	r = write_uri(vm);
	if (r < 0)
		return log_error_errno(r, "%s: writing %s/%s: %m", vm->def->name, vm->dir, VMLV_URI_FILE);
	/* A throwaway run's domain goes with vmd's connection. */
	r = lv_dom_create(c, xml, vm->opts.die_with_parent, &dom_ops, vm, &vm->dom);
	if (r < 0)
		return log_error_errno(r, "%s: libvirt %s did not start domain %s: %s", vm->def->name, conn_uri(vm),
				       name, lv_error());
	vm->dom_running = true;
	vm->link_down = false;
	vmlog_printf(&vm->log, "domain %s started through libvirt %s (id %d)", name, conn_uri(vm),
		     lv_dom_id(vm->dom));
	if (!remote) {
		r = follow_shares(vm);
		if (r < 0)
			return log_error_errno(r, "%s: finding the virtiofsd libvirt started (%s): %m", vm->def->name,
					       vm->dir);
	}
	r = qga_new_call(vm->loop, agent_call, vm, &vm->qga);
	if (r < 0)
		return r;
	log_debug("%s: domain %s started %.1f ms into the start", vm->def->name, name,
		  (double)(now_usec() - vm->t_start) / USEC_PER_MSEC);
	return 0;
}

void vmlv_destroy(struct vm *vm)
{
	int r;

	if (!vm->dom)
		return;
	r = lv_dom_destroy(vm->dom);
	/* libvirtd is away: done again when it is back (on_link). */
	if (r < 0 && r != -ENOTCONN)
		log_warning("%s: destroying domain %s: %s", vm->def->name, lv_dom_name(vm->dom), lv_error());
}

int vmlv_stop(struct vm *vm)
{
	int r = vm->dom ? lv_dom_shutdown(vm->dom) : -ENOTCONN;

	if (r < 0 && r != -ENOTCONN)
		log_warning("%s: ACPI shutdown through libvirt: %s", vm->def->name, lv_error());
	return r;
}

bool vmlv_running(struct vm *vm)
{
	return vm->dom && lv_dom_running(vm->dom) > 0;
}

void vmlv_ready(struct vm *vm)
{
	_cleanup_free_ char *meta = metadata_text(vm);

	/* Without it, a next daemon would take this VM for one that never
	 * came up, and start it afresh. */
	if (!meta || lv_dom_set_metadata(vm->dom, meta) < 0)
		log_warning("%s: recording readiness in the domain's metadata: %s", vm->def->name,
			    meta ? lv_error() : "out of memory");
}

void vmlv_release(struct vm *vm)
{
	lv_dom_free(vm->dom);
	vm->dom = NULL;
	vm->dom_running = false;
	vm->link_down = false;
}

static void on_ended(struct lv_dom *d, enum lv_end why, const char *detail, void *userdata)
{
	struct vm *vm = userdata;

	(void)d;
	vm->dom_running = false;
	if (!vm->t_down)
		vm->t_down = now_usec();
	if (vm->stop_requested && why != LV_END_CRASHED && why != LV_END_GONE)
		vm_set_reason(vm, VM_EXIT_STOPPED, "stopped by request");
	else if (why == LV_END_GUEST_POWEROFF)
		vm_set_reason(vm, VM_EXIT_POWEROFF, "the guest powered off");
	else if (why == LV_END_REBOOT)
		vm_set_reason(vm, VM_EXIT_REBOOT, "%s", detail);
	else if (!vm->ready && vm->state == VM_BOOTING)
		vm_set_reason(vm, VM_EXIT_START_FAILED, "the domain ended before the guest was ready: %s", detail);
	else if (why == LV_END_SHUTDOWN)
		vm_set_reason(vm, VM_EXIT_POWEROFF, "shut down through libvirt, not by vmd");
	else if (why == LV_END_DESTROYED)
		vm_set_reason(vm, VM_EXIT_CRASHED, "destroyed through libvirt, not by vmd");
	else
		vm_set_reason(vm, VM_EXIT_CRASHED, "%s", detail);
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "domain ended: %s", detail);
	vm_begin_teardown(vm);
}

static void on_console(struct lv_dom *d, const char *buf, size_t n, void *userdata)
{
	(void)d;
	vm_console_feed(userdata, buf, n);
}

static void on_notify(struct lv_dom *d, const char *buf, size_t n, void *userdata)
{
	(void)d;
	vm_notify_feed(userdata, buf, n);
}

static void on_link(struct lv_dom *d, bool up, void *userdata)
{
	struct vm *vm = userdata;

	(void)d;
	vm->link_down = !up;
	if (!up) {
		log_warning("%s: libvirtd went away; the domain runs on, and vmd follows it again once it is back",
			    vm->def->name);
		return;
	}
	log_info("%s: libvirtd is back, and so is the domain", vm->def->name);
	/* What was asked of it while libvirtd was away. */
	if (vm->tearing_down || vm->stop_forced || (vm->stop_requested && !vm->ready))
		vmlv_destroy(vm);
	else if (vm->stop_requested && vmlv_stop(vm) < 0)
		vmlv_destroy(vm);
}

int vmlv_adopt(struct vm *vm, struct lv_conn *c, const char *domain, const struct vmstate *st)
{
	const char *why = NULL;
	int r;

	vm->driver = DRIVER_LIBVIRT;
	vm->reason = VM_EXIT_NONE;
	/* A vmd run of the same VM holds its run directory. */
	r = vm_lock_run_dir(vm, false);
	if (r < 0)
		return r;
	vm->adopted = true;
	r = vm_open_log(vm);
	if (r == 0)
		r = vm_adopt_plan(vm);
	if (r < 0)
		goto stale;
	r = lv_dom_attach(c, domain, !st->ready, &dom_ops, vm, &vm->dom);
	if (r < 0) {
		why = "its domain cannot be followed";
		goto stale;
	}
	vm->dom_running = true;
	if (!st->ready) {
		why = "it was not fully started";
		goto stale;
	}
	if (!vm->def->host && follow_shares(vm) < 0) {
		why = "one of its virtiofsd is gone";
		goto stale;
	}
	r = qga_new_call(vm->loop, agent_call, vm, &vm->qga);
	if (r < 0)
		goto stale;
	vmlog_printf(&vm->log, "adopted by a new vmd (domain %s)", domain);
	log_info("%s: adopted (libvirt domain %s on %s)", vm->def->name, domain, lv_conn_uri(c));
	vm_adopted(vm, st);
	return 0;

stale:
	log_warning("%s: not adopting domain %s: %s; destroying it", vm->def->name, domain, why ? why : strerror(-r));
	if (vm->log.fd >= 0)
		vmlog_printf(&vm->log, "not adopted: %s", why ? why : strerror(-r));
	if (vm->dom)
		lv_dom_destroy(vm->dom);
	else
		lv_destroy_by_name(c, domain);
	for (size_t i = 0; i < vm->n_shares; i++)
		vm_forget_share(vm, &vm->shares[i]);
	vm->adopted = false;
	vm_cleanup_files(vm);
	return -ESTALE;
}
