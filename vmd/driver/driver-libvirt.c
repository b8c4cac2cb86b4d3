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
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "base64.h"
#include "domxml.h"
#include "driver.h"
#include "libvirt.h"
#include "link.h"
#include "log.h"

#define DOMAIN_PREFIX "vmd-"
#define AGENT_TIMEOUT_S 10
#define INSTANCE_ID_LEN 32
/* In a libvirt VM's run directory: the URI of the libvirtd it runs on,
 * so that a next daemon knows to look there (and to load libvirt). */
#define URI_FILE "libvirt-uri"

/* How long a domain's QEMU may outlive its virtiofsd before the virtiofsd
 * is taken for the cause. */
#define SHARE_BLAME_USEC (5 * USEC_PER_SEC)

struct drv_vm {
	struct vm_plan *p;
	const struct drv_events *ev;
	struct lv_dom *dom;
	bool dom_running; /* active, as far as vmd knows */
	struct qga *qga;
};

static void on_ended(struct lv_dom *dom, enum lv_end why, const char *detail, void *userdata);
static void on_console(struct lv_dom *dom, const char *buf, size_t n, void *userdata);
static void on_notify(struct lv_dom *dom, const char *buf, size_t n, void *userdata);
static void on_link(struct lv_dom *dom, bool up, void *userdata);

static const struct lv_dom_ops dom_ops = {
	.ended = on_ended,
	.console = on_console,
	.notify = on_notify,
	.link = on_link,
};

/* Which vmd made a domain: a random id kept in <state_dir>/instance-id,
 * so that two vmds (two state directories) on one libvirtd never take
 * each other's domains. */
static int instance_id(const struct host_config *host, char out[INSTANCE_ID_LEN + 1])
{
	_cleanup_free_ char *path = path_join(host->state_dir, "instance-id"), *text = NULL;
	uint8_t rnd[INSTANCE_ID_LEN / 2];
	char line[INSTANCE_ID_LEN + 2];
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
	snprintf(line, sizeof(line), "%s\n", out);
	/* Another vmd may have made one meanwhile: the first stands. */
	r = write_file(path, line, 0644, WRITE_FILE_NOREPLACE);
	if (r < 0 && r != -EEXIST)
		return r;
	return instance_id(host, out);
}

static char *domain_name(const char *vm)
{
	return xasprintf(DOMAIN_PREFIX "%s", vm);
}

static const char *conn_uri(const struct vm_plan *p)
{
	const struct host_remote *h = p->def->host ? host_remote_find(p->host, p->def->host) : NULL;

	return h ? h->libvirt_uri : p->host->libvirt_uri;
}

/* What the domain's metadata says of this boot, for the next daemon. */
static char *metadata_text(const struct vm_plan *p)
{
	char id[INSTANCE_ID_LEN + 1];
	_cleanup_free_ char *json = NULL;
	struct vmstate st = {
		.def = (struct vm_def *)p->def,
		.started_at = p->started_at,
		.boot_usec = p->boot_usec,
		.ready = p->ready,
		.restarts = p->restarts,
		.last_exit = (char *)p->last_exit,
		.instance = id,
	};

	if (instance_id(p->host, id) < 0)
		return NULL;
	json = vmstate_format(&st);
	return json ? base64_encode(json, strlen(json)) : NULL;
}

static char *shell_quote(const char *s)
{
	size_t n = 3;
	char *out, *o;

	for (const char *c = s; *c; c++)
		n += *c == '\'' ? 4 : 1;
	out = o = malloc(n);
	if (!out)
		return NULL;
	*o++ = '\'';
	for (const char *c = s; *c; c++) {
		if (*c == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else
			*o++ = *c;
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
 * virtiofsd on this host. */
static char *wrapper_path(const struct vm_plan *p, size_t i)
{
	return xasprintf("%s/fs%zu-virtiofsd", p->dir, i);
}

static int write_wrapper(const struct vm_plan *p, size_t i)
{
	const struct vm_share *s = &p->shares[i];
	_cleanup_free_ char *path = wrapper_path(p, i), *exe = self_exe();
	_cleanup_free_ char *qexe = NULL, *qpid = NULL, *qfsd = NULL, *qbelow = NULL, *qat = NULL, *text = NULL;
	_cleanup_free_ char *below = s->root_len ? strndup(s->source, s->root_len) : strdup("/");

	if (!path || !exe || !below)
		return -ENOMEM;
	qexe = shell_quote(exe);
	qpid = shell_quote(s->pidfile);
	qfsd = shell_quote(p->opts->virtiofsd);
	qbelow = shell_quote(below);
	qat = shell_quote(s->mountpoint);
	if (!qexe || !qpid || !qfsd || !qbelow || !qat)
		return -ENOMEM;
	if (mkdir(s->mountpoint, 0700) < 0 && errno != EEXIST)
		return -errno;
	/* It opens the source below that directory with no symlink followed
	 * as virtiofsd starts, and gives virtiofsd the fd. */
	text = xasprintf("#!/bin/sh\n# vmd: libvirt runs this as the virtiofsd of VM %s for %s.\n"
			 "exec %s virtiofsd-exec --pidfile=%s --below=%s --at=%s%s%s -- %s \"$@\"\n",
			 p->def->name, s->tag, qexe, qpid, qbelow, qat, s->read_only ? " --read-only" : "",
			 streq(s->tag, "nix-store") ? " --world-readable" : "", qfsd);
	if (!text)
		return -ENOMEM;
	return write_file(path, text, 0700, 0);
}

static int write_uri(const struct vm_plan *p)
{
	_cleanup_free_ char *path = path_join(p->dir, URI_FILE), *line = xasprintf("%s\n", conn_uri(p));

	if (!path || !line)
		return -ENOMEM;
	return write_file(path, line, 0600, 0);
}

/* QEMU runs as libvirt's qemu user, which must reach the images: the
 * directories vmd made down to them may be searched (not listed) by
 * others. libvirt's DAC driver then labels the images themselves. */
static int make_searchable(const struct vm_plan *p, const char *image)
{
	_cleanup_free_ char *dir = strdup(image);
	size_t top = strlen(p->host->state_dir);

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
static int follow_shares(struct drv_vm *d)
{
	struct vm_plan *p = d->p;

	for (size_t i = 0; i < p->n_shares; i++) {
		_cleanup_free_ char *text = NULL;
		struct proc_id id;
		int pid, r;

		r = read_file(p->shares[i].pidfile, 64, &text, NULL);
		if (r < 0)
			return r;
		if (sscanf(text, "%d", &pid) != 1 || pid <= 1)
			return -EBADMSG;
		r = proc_id_get(pid, &id);
		if (r == 0)
			r = child_adopt(&p->shares[i].proc, p->loop, &id, d->ev->share_exited, d->ev->userdata);
		if (r < 0)
			return r;
	}
	return 0;
}

static int agent_call(void *userdata, const char *cmd, char **ret_reply, const char **ret_error)
{
	struct drv_vm *d = userdata;
	int r;

	if (!d->dom)
		return -ENOTCONN;
	r = lv_dom_agent(d->dom, cmd, AGENT_TIMEOUT_S, ret_reply);
	if (r < 0)
		*ret_error = lv_error();
	return r;
}

static int get_conn(const struct vm_plan *p, struct lv_conn **ret)
{
	int r;

	if (!p->opts->lv)
		return log_error_errno(EOPNOTSUPP, "%s: the libvirt driver is not set up here", p->def->name);
	r = lv_conn_get(p->opts->lv, conn_uri(p), false, ret);
	if (r < 0)
		return log_error_errno(r, "%s: libvirt %s: %m", p->def->name, conn_uri(p));
	if (!lv_conn_is_up(*ret))
		return log_error_errno(ENOTCONN, "%s: libvirt %s is not reachable now (vmd keeps trying)", p->def->name,
				       conn_uri(p));
	return 0;
}

/* A closure built here must have been copied to the other host too. */
static int check_remote_closure(const struct vm_plan *p, struct lv_conn *c)
{
	static const char *const parts[] = { "kernel", "initrd", "init", NULL };
	const char *missing = NULL;
	int r = lv_check_files(c, p->system, parts, &missing);

	if (r == -ENOENT)
		return log_error_errno(r, "%s: the closure %s is not on host %s (%s is missing there); copy it with "
					  "\"nix copy --to ssh://HOST %s\"",
				       p->def->name, p->system, p->def->host, missing ? missing : p->system, p->system);
	if (r < 0)
		return log_error_errno(r, "%s: checking for the closure on host %s: %s", p->def->name, p->def->host,
				       lv_error());
	return 0;
}

static bool want_kvm(const struct vm_plan *p, struct lv_conn *c)
{
	const struct host_remote *h = p->def->host ? host_remote_find(p->host, p->def->host) : NULL;

	if (!h)
		return p->opts->accel == ACCEL_KVM;
	if (h->accel != ACCEL_AUTO)
		return h->accel == ACCEL_KVM;
	return lv_has_kvm(c) > 0;
}

/* The pure part: the plan as a domain. */
int libvirt_plan_xml(const struct vm_plan *p, bool kvm, const char *metadata, char **ret)
{
	const struct host_remote *remote = p->def->host ? host_remote_find(p->host, p->def->host) : NULL;
	_cleanup_free_ struct domxml_fs *fs = calloc(p->n_shares + 1, sizeof(*fs));
	_cleanup_free_ struct domxml_disk *disks = calloc(p->n_images + 1, sizeof(*disks));
	_cleanup_free_ char *kernel = path_join(p->system, "kernel"), *initrd = path_join(p->system, "initrd");
	_cleanup_free_ char *name = domain_name(p->def->name);
	_cleanup_strv_free_ char **wrappers = NULL;
	char tap[LINK_NAME_MAX + 1], mac[18];

	if (!fs || !disks || !kernel || !initrd || !name)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_shares; i++) {
		int r = remote ? 0 : strv_consume(&wrappers, wrapper_path(p, i));

		if (r < 0)
			return r;
		fs[i] = (struct domxml_fs){
			.tag = p->shares[i].tag,
			.source = p->shares[i].source,
			.binary = !remote ? wrappers[i] : remote->virtiofsd ? remote->virtiofsd : p->host->virtiofsd,
			.cache = p->shares[i].cache,
		};
	}
	for (size_t i = 0; i < p->n_images; i++)
		disks[i] = (struct domxml_disk){ p->images[i].disk->name, p->images[i].path,
						 p->images[i].disk->base != NULL, !p->images[i].disk->persistent };
	struct domxml_config dc = {
		.name = name,
		.kvm = kvm,
		.vcpus = p->def->vcpus,
		.memory_mib = p->def->memory_mib,
		.kernel = kernel,
		.initrd = initrd,
		.cmdline = p->cmdline,
		.fs = fs,
		.n_fs = p->n_shares,
		.disks = disks,
		.n_disks = p->n_images,
		.metadata = metadata,
	};
	if (p->def->network) {
		uint8_t m[6];

		def_mac(p->def, m);
		mac_format(m, mac);
		link_name_for_vm(p->def->name, tap);
		dc.bridge = p->def->network->bridge;
		dc.mac = mac;
		dc.tap = tap;
		dc.queues = p->def->vcpus < TAP_QUEUES_MAX ? p->def->vcpus : TAP_QUEUES_MAX;
	}
	return domxml_build(&dc, ret);
}

static int ld_new(struct vm_plan *p, const struct drv_events *ev, struct drv_vm **ret)
{
	struct drv_vm *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	*d = (struct drv_vm){ .p = p, .ev = ev };
	*ret = d;
	return 0;
}

static void ld_disconnect(struct drv_vm *d)
{
	qga_freep(&d->qga);
}

static void ld_release(struct drv_vm *d)
{
	ld_disconnect(d);
	lv_dom_free(d->dom);
	free(d);
}

static int ld_start(struct drv_vm *d)
{
	struct vm_plan *p = d->p;
	const struct host_remote *remote = p->def->host ? host_remote_find(p->host, p->def->host) : NULL;
	_cleanup_free_ char *meta = NULL, *xml = NULL;
	struct lv_conn *c;
	int r;

	r = get_conn(p, &c);
	if (r < 0)
		return r;
	if (remote) {
		r = check_remote_closure(p, c);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; !remote && i < p->n_shares; i++) {
		r = write_wrapper(p, i);
		if (r < 0)
			return log_error_errno(r, "%s: writing the virtiofsd wrapper in %s: %m", p->def->name, p->dir);
	}
	for (size_t i = 0; i < p->n_images; i++) {
		r = make_searchable(p, p->images[i].path);
		if (r < 0)
			return log_error_errno(r, "%s: letting libvirt's QEMU reach %s: %m", p->def->name,
					       p->images[i].path);
	}
	/* libvirt opens the images by path, and its fd passing
	 * (virDomainFDAssociate) needs a domain that exists before it starts,
	 * which a transient one does not: so the checks QEMU's fd sets get
	 * are made here, just before the domain is created (README: the
	 * remaining window). */
	for (size_t i = 0; i < p->n_images; i++) {
		r = vm_image_open(p, i);
		if (r < 0)
			return r;
		safe_close(r);
	}
	meta = metadata_text(p);
	if (!meta)
		return log_error_errno(ENOMEM, "%s: the domain's metadata (instance id in %s): %m", p->def->name,
				       p->host->state_dir);
	r = libvirt_plan_xml(p, want_kvm(p, c), meta, &xml);
	if (r < 0)
		return r;
	r = write_uri(p);
	if (r < 0)
		return log_error_errno(r, "%s: writing %s/%s: %m", p->def->name, p->dir, URI_FILE);
	/* A throwaway run's domain goes with vmd's connection. */
	r = lv_dom_create(c, xml, p->opts->die_with_parent, &dom_ops, d, &d->dom);
	if (r < 0)
		return log_error_errno(r, "%s: libvirt %s did not start domain " DOMAIN_PREFIX "%s: %s", p->def->name,
				       conn_uri(p), p->def->name, lv_error());
	d->dom_running = true;
	vmlog_printf(p->log, "domain %s started through libvirt %s (id %d)", lv_dom_name(d->dom), conn_uri(p),
		     lv_dom_id(d->dom));
	if (!remote) {
		r = follow_shares(d);
		if (r < 0)
			return log_error_errno(r, "%s: finding the virtiofsd libvirt started (%s): %m", p->def->name,
					       p->dir);
	}
	r = qga_new_call(p->loop, agent_call, d, &d->qga);
	if (r < 0)
		return r;
	log_debug("%s: domain %s started %.1f ms into the start", p->def->name, lv_dom_name(d->dom),
		  (double)(now_usec() - p->t_start) / USEC_PER_MSEC);
	return 0;
}

static void ld_destroy(struct drv_vm *d, enum drv_kill how)
{
	int r;

	if (!d->dom || !d->dom_running)
		return;
	r = lv_dom_destroy(d->dom);
	/* libvirtd is away: done again when it is back (on_link). */
	if (r < 0 && r != -ENOTCONN)
		log_warning("%s: destroying domain %s: %s", d->p->def->name, lv_dom_name(d->dom), lv_error());
	if (how == DRV_KILL_WAIT)
		d->dom_running = false;
}

static int ld_stop(struct drv_vm *d)
{
	int r = d->dom ? lv_dom_shutdown(d->dom) : -ENOTCONN;

	if (r < 0 && r != -ENOTCONN)
		log_warning("%s: ACPI shutdown through libvirt: %s", d->p->def->name, lv_error());
	if (r == 0)
		vmlog_printf(d->p->log, "stopping: ACPI powerdown (through libvirt)");
	return r;
}

static bool ld_running(const struct drv_vm *d)
{
	return d->dom_running;
}

/* With libvirt, QEMU's exit is not ours to see: its virtiofsd go while
 * it exits, and the domain's end comes seconds later when QEMU is slow to
 * die. Blame the share only once QEMU has outlived it by SHARE_BLAME_USEC,
 * and not at all while libvirt says the domain is going (unless that
 * takes for ever). */
static bool ld_hold_share_blame(struct drv_vm *d, usec_t since)
{
	return d->dom && lv_dom_running(d->dom) > 0 ? since < SHARE_BLAME_USEC : since < 6 * SHARE_BLAME_USEC;
}

static void ld_ready(struct drv_vm *d)
{
	_cleanup_free_ char *meta = metadata_text(d->p);

	/* Without it, a next daemon would take this VM for one that never
	 * came up, and start it afresh. */
	if (!meta || lv_dom_set_metadata(d->dom, meta) < 0)
		log_warning("%s: recording readiness in the domain's metadata: %s", d->p->def->name,
			    meta ? lv_error() : "out of memory");
}

static struct qga *ld_agent(struct drv_vm *d)
{
	return d->qga;
}

static ssize_t ld_console_write(struct drv_vm *d, const void *buf, size_t n)
{
	return d->dom ? lv_dom_console_send(d->dom, buf, n) : -ENOTCONN;
}

static const char *ld_domain(const struct drv_vm *d)
{
	return d->dom && lv_dom_id(d->dom) ? lv_dom_name(d->dom) : NULL;
}

static void on_ended(struct lv_dom *dom, enum lv_end why, const char *detail, void *userdata)
{
	struct drv_vm *d = userdata;
	static const struct {
		enum drv_end end;
		const char *detail; /* NULL: libvirt's */
	} map[] = {
		[LV_END_GUEST_POWEROFF] = { DRV_END_POWEROFF, NULL },
		[LV_END_SHUTDOWN] = { DRV_END_SHUTDOWN, "shut down through libvirt, not by vmd" },
		[LV_END_DESTROYED] = { DRV_END_DESTROYED, "destroyed through libvirt, not by vmd" },
		[LV_END_REBOOT] = { DRV_END_REBOOT, NULL },
		[LV_END_CRASHED] = { DRV_END_CRASHED, NULL },
		[LV_END_GONE] = { DRV_END_GONE, NULL },
	};
	_cleanup_free_ char *early = xasprintf("the domain ended before the guest was ready: %s", detail);

	(void)dom;
	d->dom_running = false;
	if (d->p->log->fd >= 0)
		vmlog_printf(d->p->log, "domain ended: %s", detail);
	d->ev->ended(d->ev->userdata, map[why].end, map[why].detail ? map[why].detail : detail,
		     early ? early : detail);
}

static void on_console(struct lv_dom *dom, const char *buf, size_t n, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)dom;
	d->ev->console(d->ev->userdata, buf, n);
}

static void on_notify(struct lv_dom *dom, const char *buf, size_t n, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)dom;
	d->ev->notify(d->ev->userdata, buf, n);
}

static void on_link(struct lv_dom *dom, bool up, void *userdata)
{
	struct drv_vm *d = userdata;

	(void)dom;
	if (up)
		log_info("%s: libvirtd is back, and so is the domain", d->p->def->name);
	else
		log_warning("%s: libvirtd went away; the domain runs on, and vmd follows it again once it is back",
			    d->p->def->name);
	d->ev->link(d->ev->userdata, up);
}

/* What discovery found: the connection and the domain's name. */
struct found_domain {
	struct lv_conn *conn;
	char *name;
};

static int ld_adopt(struct drv_vm *d, const struct drv_found *f, const char **why)
{
	const struct found_domain *fd = f->handle;
	struct vm_plan *p = d->p;
	int r;

	r = lv_dom_attach(fd->conn, fd->name, !f->st.ready, &dom_ops, d, &d->dom);
	if (r < 0) {
		*why = "its domain cannot be followed";
		return -ESTALE;
	}
	d->dom_running = true;
	if (!f->st.ready) {
		*why = "it was not fully started";
		return -ESTALE;
	}
	if (!p->def->host && follow_shares(d) < 0) {
		*why = "one of its virtiofsd is gone";
		return -ESTALE;
	}
	r = qga_new_call(p->loop, agent_call, d, &d->qga);
	if (r < 0)
		return r;
	vmlog_printf(p->log, "adopted by a new vmd (domain %s)", fd->name);
	log_info("%s: adopted (libvirt domain %s on %s)", p->def->name, fd->name, lv_conn_uri(fd->conn));
	return 0;
}

static void ld_discard(const struct drv_found *f)
{
	const struct found_domain *fd = f->handle;

	lv_destroy_by_name(fd->conn, fd->name);
}

/* Who hears of what a reconnect finds: one daemon per process. */
static struct {
	const struct host_config *host;
	drv_found_cb cb;
	void *userdata;
} discovery;

/* One of the domains on c with vmd's metadata (text). Domains of another
 * vmd (instance id), with another VM's name, or unreadable are left
 * alone. */
static void found_domain(struct lv_conn *c, const char *domain, const char *text, bool at_start)
{
	_cleanup_free_ char *json = NULL, *expect = NULL, *where = xasprintf("domain %s", domain);
	char id[INSTANCE_ID_LEN + 1];
	struct found_domain fd = { c, (char *)domain };
	struct drv_found f = { .driver = &driver_libvirt, .where = where ? where : (char *)domain, .handle = &fd };
	size_t len;

	if (base64_decode(text, strlen(text), &json, &len) < 0 || vmstate_parse(json, len, &f.st) < 0) {
		log_warning("libvirt %s: domain %s carries vmd's metadata, but it cannot be read; leaving it alone",
			    lv_conn_uri(c), domain);
		return;
	}
	expect = domain_name(f.st.def->name);
	if (instance_id(discovery.host, id) < 0 || !f.st.instance || !streq(f.st.instance, id))
		log_debug("libvirt %s: domain %s belongs to another vmd; leaving it alone", lv_conn_uri(c), domain);
	else if (!expect || !streq(expect, domain))
		log_warning("libvirt %s: domain %s says it is VM %s; leaving it alone", lv_conn_uri(c), domain,
			    f.st.def->name);
	else
		discovery.cb(&f, at_start, discovery.userdata);
	vmstate_clear(&f.st);
}

static void found_on(struct lv_conn *c, bool at_start)
{
	_cleanup_strv_free_ char **names = NULL, **texts = NULL;
	int r = lv_list_ours(c, &names, &texts);

	if (r < 0) {
		log_warning("libvirt %s: listing its domains: %s", lv_conn_uri(c), lv_error());
		return;
	}
	for (size_t i = 0; names && names[i]; i++)
		found_domain(c, names[i], texts[i], at_start);
}

static void on_conn_up(struct lv_conn *c, void *userdata)
{
	(void)userdata;
	found_on(c, false);
}

/* Where a previous daemon ran libvirt domains: the URIs its VMs' run
 * directories name. */
static int uris_in_run_dirs(const struct host_config *host, char ***ret)
{
	_cleanup_free_ char *vms = path_join(host->run_dir, "vms");
	struct dirent *de;
	DIR *dir = vms ? opendir(vms) : NULL;
	int r = 0;

	if (!dir)
		return vms ? 0 : -ENOMEM;
	while (r == 0 && (de = readdir(dir))) {
		_cleanup_free_ char *path = NULL, *uri = NULL;

		if (de->d_name[0] == '.' || check_name(de->d_name))
			continue;
		path = xasprintf("%s/%s/" URI_FILE, vms, de->d_name);
		if (!path || read_file(path, LIBVIRT_URI_MAX + 2, &uri, NULL) < 0)
			continue;
		uri[strcspn(uri, "\n")] = 0;
		if (!check_libvirt_uri(uri) && !strv_contains(*ret, uri))
			r = strv_extend(ret, uri);
	}
	closedir(dir);
	return r;
}

static int ld_discover(const struct host_config *host, const struct vm_options *opts, drv_found_cb cb,
		       void *userdata)
{
	_cleanup_strv_free_ char **uris = NULL;
	struct lv_conn *c;
	int r;

	if (!opts->lv)
		return 0;
	discovery.host = host;
	discovery.cb = cb;
	discovery.userdata = userdata;
	lv_on_conn_up(opts->lv, on_conn_up, NULL);
	/* libvirt is loaded only for a vmd that uses it: the default driver
	 * or another host in the settings, or domains a previous daemon left
	 * (the local libvirtd then only if it answers now). */
	if (host->driver == DRIVER_LIBVIRT && (r = strv_extend(&uris, host->libvirt_uri)) < 0)
		return r;
	for (size_t i = 0; i < host->n_hosts; i++)
		if (!strv_contains(uris, host->hosts[i].libvirt_uri) &&
		    (r = strv_extend(&uris, host->hosts[i].libvirt_uri)) < 0)
			return r;
	if (uris_in_run_dirs(host, &uris) < 0)
		log_warning("looking for libvirt domains a previous daemon left: out of memory");
	for (size_t i = 0; uris && uris[i]; i++) {
		bool declared = (host->driver == DRIVER_LIBVIRT && streq(uris[i], host->libvirt_uri)) ||
				!streq(uris[i], host->libvirt_uri);

		if (lv_conn_get(opts->lv, uris[i], !declared, &c) == 0 && lv_conn_is_up(c))
			found_on(c, true);
	}
	return 0;
}

const struct vm_driver driver_libvirt = {
	.name = "libvirt",
	.lock_inherited = false,
	.term_action = "destroying the domain",
	.new = ld_new,
	.release = ld_release,
	.start = ld_start,
	.stop = ld_stop,
	.destroy = ld_destroy,
	.running = ld_running,
	.ready = ld_ready,
	.disconnect = ld_disconnect,
	.agent = ld_agent,
	.console_write = ld_console_write,
	.hold_share_blame = ld_hold_share_blame,
	.domain = ld_domain,
	.adopt = ld_adopt,
	.discover = ld_discover,
	.discard = ld_discard,
};
