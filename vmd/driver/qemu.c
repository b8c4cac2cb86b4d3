/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/kvm.h>

#include "guestconf.h"
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

/* "8:9:10" */
static char *fd_list(const int *fds, unsigned n)
{
	char *s = NULL;

	for (unsigned i = 0; i < n; i++) {
		char *t = xasprintf("%s%s%d", s ? s : "", s ? ":" : "", fds[i]);

		free(s);
		if (!t)
			return NULL;
		s = t;
	}
	return s;
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

	if (c->fw_cfg_file) {
		ADD("-fw_cfg");
		ADD_ESCAPED("file=%s,name=" IMAGE_FW_CFG_NAME, c->fw_cfg_file);
	}

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

	/* Connected by vmd: QEMU needs no access to the run directory. */
	for (size_t i = 0; i < c->n_fs; i++) {
		ADD("-chardev");
		ADD("socket,id=fs%zu,fd=%d", i, c->fs[i].fd);
		ADD("-device");
		ADD("vhost-user-fs-pci,chardev=fs%zu,tag=%s,queue-size=1024", i, c->fs[i].tag);
	}

	for (size_t i = 0; i < c->n_disks; i++) {
		const struct qemu_disk *k = &c->disks[i];
		_cleanup_free_ char *backing = NULL;

		/* Disks are fd sets (as libvirt passes them): the image (set
		 * 2i) and an overlay's base (set 2i+1) were opened by vmd, with
		 * no symlink followed, as QEMU started. */
		ADD("-add-fd");
		ADD("fd=%d,set=%zu,opaque=disk-%s", k->fd, 2 * i, k->name);
		if (k->base_format) {
			ADD("-add-fd");
			ADD("fd=%d,set=%zu,opaque=base-%s", k->base_fd, 2 * i + 1, k->name);
			backing = xasprintf(",backing.driver=%s,backing.file.driver=%s,backing.file.filename=/dev/fdset/%zu,"
					    "backing.auto-read-only=off,backing.read-only=on",
					    k->base_format, k->base_blockdev ? "host_device" : "file", 2 * i + 1);
			if (!backing)
				return -ENOMEM;
		}
		/* werror/rerror=report: a full host disk gives the guest EIO
		 * instead of pausing the VM forever (QEMU's default).
		 * auto-read-only=off: else -drive first asks the set for a
		 * read-only fd, and the set holds only the read-write one. */
		ADD("-drive");
		ADD("file=/dev/fdset/%zu,format=%s%s,if=none,id=disk-%s,auto-read-only=off,cache=%s,aio=threads,discard=unmap,werror=report,rerror=report",
		    2 * i, k->base_format ? "qcow2" : "raw", backing ? backing : "", k->name,
		    k->ephemeral ? "unsafe" : "writeback");
		ADD("-device");
		ADD("virtio-blk-pci,drive=disk-%s,serial=%s", k->name, k->name);
	}
	if (c->n_taps > 0) {
		_cleanup_free_ char *fds = fd_list(c->tap_fds, c->n_taps);
		_cleanup_free_ char *vhost = c->vhost_fds ? fd_list(c->vhost_fds, c->n_taps) : NULL;

		if (!fds || (c->vhost_fds && !vhost))
			return -ENOMEM;
		ADD("-netdev");
		/* vhost-net opened by vmd too: QEMU has no /dev/vhost-net. */
		if (vhost)
			ADD("tap,id=net0,%s=%s,vhost=on,%s=%s", c->n_taps > 1 ? "fds" : "fd", fds,
			    c->n_taps > 1 ? "vhostfds" : "vhostfd", vhost);
		else
			ADD("tap,id=net0,%s=%s,vhost=off", c->n_taps > 1 ? "fds" : "fd", fds);
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
