/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/kvm.h>

#include "addr.h"
#include "qemu.h"

/* QEMU option values are comma-separated; a literal comma is doubled. */
static char *qemu_escape(const char *s)
{
	size_t n = strlen(s), commas = 0;
	char *e, *p;

	for (const char *q = s; *q; q++)
		commas += *q == ',';
	e = p = malloc(n + commas + 1);
	if (!e)
		return NULL;
	for (const char *q = s; *q; q++) {
		*p++ = *q;
		if (*q == ',')
			*p++ = ',';
	}
	*p = 0;
	return e;
}

#define ADD(...)                                              \
	do {                                                  \
		int _r = strv_extendf(&a, __VA_ARGS__);       \
		if (_r < 0)                                   \
			return _r;                            \
	} while (0)

#define ADD_ESCAPED(fmt, value, ...)                          \
	do {                                                  \
		_cleanup_free_ char *_e = qemu_escape(value); \
		if (!_e)                                      \
			return -ENOMEM;                       \
		ADD(fmt, _e, ##__VA_ARGS__);                  \
	} while (0)

int qemu_argv(const struct qemu_config *c, char ***ret)
{
	_cleanup_strv_free_ char **a = NULL;
	bool kvm = c->accel == ACCEL_KVM;

	ADD("%s", c->binary);
	ADD("-name");
	ADD("guest=%s,debug-threads=on", c->name);
	ADD("-nodefaults");
	ADD("-no-user-config");
	ADD("-display");
	ADD("none");
	/* A guest reboot ends this QEMU; the supervisor decides what next
	 * (a restart with fresh ephemeral disks). */
	ADD("-no-reboot");
	ADD("-sandbox");
	ADD("on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	/* vhost-user-fs needs guest memory that virtiofsd can map: memfd,
	 * shared. Every VM has a virtiofs store, so this is not optional. */
	ADD("-machine");
	ADD("pc,accel=%s,memory-backend=mem", kvm ? "kvm" : "tcg");
	if (kvm) {
		ADD("-cpu");
		ADD("host");
	}
	ADD("-smp");
	ADD("%u", c->vcpus);
	ADD("-m");
	ADD("%uM", c->memory_mib);
	ADD("-object");
	ADD("memory-backend-memfd,id=mem,size=%uM,share=on", c->memory_mib);
	ADD("-kernel");
	ADD_ESCAPED("%s", c->kernel);
	ADD("-initrd");
	ADD_ESCAPED("%s", c->initrd);
	ADD("-append");
	ADD("%s", c->cmdline);

	/* Every channel is a listening socket that vmd bound before exec and
	 * can reconnect to later (after its own restart). QEMU starts paused
	 * (-S) and runs once vmd is connected, so no early output is lost. */
	ADD("-chardev");
	ADD("socket,id=qmp,fd=%d,server=on,wait=off", c->qmp_fd);
	ADD("-mon");
	ADD("chardev=qmp,mode=control");
	ADD("-chardev");
	ADD("socket,id=console,fd=%d,server=on,wait=off", c->console_fd);
	ADD("-serial");
	ADD("chardev:console");
	ADD("-device");
	ADD("virtio-serial-pci,id=vser0");
	ADD("-chardev");
	ADD("socket,id=notify,fd=%d,server=on,wait=off", c->notify_fd);
	ADD("-device");
	ADD("virtserialport,bus=vser0.0,chardev=notify,name=io.vmd.notify");
	ADD("-chardev");
	ADD("socket,id=agent,fd=%d,server=on,wait=off", c->agent_fd);
	ADD("-device");
	ADD("virtserialport,bus=vser0.0,chardev=agent,name=org.qemu.guest_agent.0");

	for (size_t i = 0; i < c->n_fs; i++) {
		_cleanup_free_ char *sock = qemu_escape(c->fs[i].socket);

		if (!sock)
			return -ENOMEM;
		ADD("-chardev");
		ADD("socket,id=fs%zu,path=%s", i, sock);
		ADD("-device");
		ADD("vhost-user-fs-pci,chardev=fs%zu,tag=%s,queue-size=1024", i, c->fs[i].tag);
	}

	for (size_t i = 0; i < c->n_disks; i++) {
		/* werror/rerror=report: a full host disk gives the guest EIO
		 * instead of pausing the VM forever (QEMU's default). */
		ADD("-drive");
		ADD_ESCAPED("file=%s,format=%s,if=none,id=disk-%s,cache=%s,aio=threads,discard=unmap,werror=report,rerror=report",
			    c->disks[i].path, c->disks[i].qcow2 ? "qcow2" : "raw", c->disks[i].name,
			    c->disks[i].ephemeral ? "unsafe" : "writeback");
		ADD("-device");
		ADD("virtio-blk-pci,drive=disk-%s,serial=%s", c->disks[i].name, c->disks[i].name);
	}
	if (c->n_taps > 0) {
		_cleanup_free_ char *fds = NULL;

		for (unsigned i = 0; i < c->n_taps; i++) {
			char *n = xasprintf("%s%s%d", fds ? fds : "", fds ? ":" : "", c->tap_fds[i]);

			if (!n)
				return -ENOMEM;
			free(fds);
			fds = n;
		}
		ADD("-netdev");
		ADD("tap,id=net0,%s=%s,vhost=%s", c->n_taps > 1 ? "fds" : "fd", fds, c->vhost ? "on" : "off");
		ADD("-device");
		/* Multiqueue: a queue pair per tap queue, and MSI-X vectors
		 * for each plus config and control. */
		if (c->n_taps > 1)
			ADD("virtio-net-pci,netdev=net0,mac=%s,mq=on,vectors=%u", c->mac, 2 * c->n_taps + 2);
		else
			ADD("virtio-net-pci,netdev=net0,mac=%s", c->mac);
	}
	ADD("-S");

	*ret = TAKE_PTR(a);
	return 0;
}

struct mount_entry {
	char what[64]; /* key-NAME or /dev/disk/by-id/virtio-NAME: names are short */
	const char *where, *type, *opts;
};

static int path_depth(const char *p)
{
	int d = 0;

	for (; *p; p++)
		d += *p == '/';
	return d;
}

static int mount_cmp(const void *x, const void *y)
{
	const struct mount_entry *a = x, *b = y;
	int da = path_depth(a->where), db = path_depth(b->where);

	if (da != db)
		return da - db;
	return strcmp(a->where, b->where);
}

/* Built in place: validation computes this for every definition. */
struct cmdline {
	char buf[KERNEL_CMDLINE_MAX];
	size_t len;
	bool overflow;
};

static void cl_add(struct cmdline *c, const char *fmt, ...) _printf_(2, 3);
static void cl_add(struct cmdline *c, const char *fmt, ...)
{
	size_t avail = sizeof(c->buf) - c->len;
	va_list ap;
	int n;

	if (c->overflow)
		return;
	if (c->len > 0) {
		if (avail < 2) {
			c->overflow = true;
			return;
		}
		c->buf[c->len++] = ' ';
		avail--;
	}
	va_start(ap, fmt);
	n = vsnprintf(c->buf + c->len, avail, fmt, ap);
	va_end(ap);
	/* The limit counts the terminating NUL. */
	if (n < 0 || (size_t)n >= avail)
		c->overflow = true;
	else
		c->len += (size_t)n;
}

int qemu_kernel_cmdline(const struct vm_def *d, const char *system, const char *closure_params, char **ret)
{
	size_t n = d->n_keys + d->n_shares + d->n_disks, k = 0;
	_cleanup_free_ struct mount_entry *m = calloc(n ? n : 1, sizeof(*m));
	_cleanup_free_ struct cmdline *c = calloc(1, sizeof(*c));

	if (!m || !c)
		return -ENOMEM;
	cl_add(c, "console=ttyS0");
	/* A panic reboots, and -no-reboot turns that into an exit: a crashed
	 * guest is never left hanging. */
	cl_add(c, "panic=-1");
	cl_add(c, "systemd.hostname=%s", d->name);
	if (d->network && d->network->address) {
		struct cidr a;
		char ip[ADDR_STR_MAX], mask[ADDR_STR_MAX];

		if (cidr_parse(d->network->address, &a) == 0) {
			addr_format(a.addr, ip);
			addr_format(cidr_netmask(a.prefix), mask);
			cl_add(c, "ip=%s:::%s:::off", ip, mask);
		}
	}

	for (size_t i = 0; i < d->n_keys; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "key-%s", d->keys[i].name);
		m[k].where = d->keys[i].target;
		m[k].type = "virtiofs";
		m[k].opts = d->keys[i].read_only ? "ro" : "rw";
	}
	for (size_t i = 0; i < d->n_shares; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "%s", d->shares[i].tag);
		m[k].where = d->shares[i].target;
		m[k].type = "virtiofs";
		m[k].opts = d->shares[i].read_only ? "ro" : "rw";
	}
	for (size_t i = 0; i < d->n_disks; i++, k++) {
		snprintf(m[k].what, sizeof(m[k].what), "/dev/disk/by-id/virtio-%s", d->disks[i].name);
		m[k].where = d->disks[i].mount;
		/* A base image may hold any filesystem the guest knows. */
		m[k].type = d->disks[i].base ? "auto" : "ext4";
		m[k].opts = "defaults";
	}
	qsort(m, k, sizeof(*m), mount_cmp);
	for (size_t i = 0; i < k; i++)
		cl_add(c, "systemd.mount-extra=%s:%s:%s:%s", m[i].what, m[i].where, m[i].type, m[i].opts);

	cl_add(c, "init=%s/init", system);
	if (closure_params && *closure_params) {
		size_t len = strlen(closure_params);

		while (len > 0 && (closure_params[len - 1] == '\n' || closure_params[len - 1] == ' '))
			len--;
		if (len > 0)
			cl_add(c, "%.*s", (int)len, closure_params);
	}
	for (size_t i = 0; d->kernel_params && d->kernel_params[i]; i++)
		cl_add(c, "%s", d->kernel_params[i]);

	if (c->overflow)
		return -E2BIG;
	if (ret) {
		*ret = strndup(c->buf, c->len);
		if (!*ret)
			return -ENOMEM;
	}
	return 0;
}

static bool exists_at(const char *root, const char *path)
{
	_cleanup_free_ char *p = path_join(root, path);
	struct stat st;

	return p && stat(p, &st) == 0;
}

int accel_resolve(int requested, const char *root, int *ret, const char **reason)
{
	_cleanup_free_ char *dev = NULL;
	_cleanup_close_ int fd = -EBADF;
	bool real = streq(root, "/");

	*reason = NULL;
	if (requested != ACCEL_AUTO) {
		*ret = requested;
		*reason = "requested";
		return 0;
	}
	*ret = ACCEL_TCG;
	if (exists_at(root, "sys/module/kvm_pvm")) {
		*reason = "KVM here is PVM (kvm_pvm), which crashes stock guest kernels";
		return 0;
	}
	dev = path_join(root, "dev/kvm");
	if (!dev)
		return -ENOMEM;
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		*reason = "/dev/kvm is not usable";
		return 0;
	}
	if (real && ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		*reason = "/dev/kvm answers with an unexpected API version";
		return 0;
	}
	if (!exists_at(root, "sys/module/kvm_intel") && !exists_at(root, "sys/module/kvm_amd")) {
		*reason = "KVM is neither kvm_intel nor kvm_amd";
		return 0;
	}
	*ret = ACCEL_KVM;
	*reason = "/dev/kvm works";
	return 0;
}
