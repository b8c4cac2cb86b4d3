/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "domxml.h"
#include "util.h"

struct buf {
	char *s;
	size_t len, size;
	bool oom;
};

static void put(struct buf *b, const char *fmt, ...) _printf_(2, 3);
static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->size - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->s && b->len + (size_t)n < b->size) {
			b->len += (size_t)n;
			return;
		}
		size_t want = b->size ? b->size * 2 : 4096;
		while (want < b->len + (size_t)n + 1)
			want *= 2;
		char *p = realloc(b->s, want);
		if (!p) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->size = want;
	}
}

/* Every value is validated before it gets here; escape it all the same,
 * for attribute and text use alike. */
static char *esc(const char *s)
{
	struct buf b = {};

	put(&b, "%s", "");
	for (; *s && !b.oom; s++)
		switch (*s) {
		case '&': put(&b, "&amp;"); break;
		case '<': put(&b, "&lt;"); break;
		case '>': put(&b, "&gt;"); break;
		case '\'': put(&b, "&apos;"); break;
		case '"': put(&b, "&quot;"); break;
		default: put(&b, "%c", *s);
		}
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

#define E(s) _cleanup_free_ char *e_##s = esc(c->s)

static const char *const cache_modes[] = {
	[VIRTIOFSD_CACHE_ALWAYS] = "always",
	[VIRTIOFSD_CACHE_AUTO] = NULL, /* virtiofsd's default; libvirt has no name for it */
	[VIRTIOFSD_CACHE_NONE] = "none",
};

static void disk_dev(size_t i, char out[8])
{
	/* vda..vdz, vdaa..vdzz */
	if (i < 26)
		snprintf(out, 8, "vd%c", (char)('a' + i));
	else
		snprintf(out, 8, "vd%c%c", (char)('a' + i / 26 - 1), (char)('a' + i % 26));
}

int domxml_build(const struct domxml_config *c, char **ret)
{
	struct buf b = {};
	E(name);
	E(kernel);
	E(initrd);
	E(cmdline);

	if (!e_name || !e_kernel || !e_initrd || !e_cmdline || c->n_disks > 26 * 27)
		return c->n_disks > 26 * 27 ? -E2BIG : -ENOMEM;
	put(&b, "<domain type='%s'>\n", c->kvm ? "kvm" : "qemu");
	put(&b, "  <name>%s</name>\n", e_name);
	if (c->metadata) {
		_cleanup_free_ char *m = esc(c->metadata);

		if (!m)
			return -ENOMEM;
		put(&b, "  <metadata>\n    <%s:vm xmlns:%s='%s'>%s</%s:vm>\n  </metadata>\n", DOMXML_NS_PREFIX,
		    DOMXML_NS_PREFIX, DOMXML_NS, m, DOMXML_NS_PREFIX);
	}
	put(&b, "  <memory unit='MiB'>%" PRIu64 "</memory>\n", c->memory_mib);
	put(&b, "  <vcpu>%u</vcpu>\n", c->vcpus);
	/* vhost-user-fs needs guest memory virtiofsd can map. */
	put(&b, "  <memoryBacking>\n    <source type='memfd'/>\n    <access mode='shared'/>\n  </memoryBacking>\n");
	put(&b, "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
	put(&b, "    <kernel>%s</kernel>\n    <initrd>%s</initrd>\n    <cmdline>%s</cmdline>\n  </os>\n", e_kernel,
	    e_initrd, e_cmdline);
	put(&b, "  <features>\n    <acpi/>\n  </features>\n");
	if (c->kvm)
		put(&b, "  <cpu mode='host-passthrough'/>\n");
	/* Every end of the guest ends the domain; vmd's restart policy
	 * decides, with fresh ephemeral disks. A reset is seen as a REBOOT
	 * event, on which vmd destroys the domain: with on_reboot=destroy
	 * libvirt would report a reboot as a guest poweroff. */
	put(&b, "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
		"  <on_crash>destroy</on_crash>\n");
	put(&b, "  <devices>\n");
	for (size_t i = 0; i < c->n_fs; i++) {
		_cleanup_free_ char *tag = esc(c->fs[i].tag), *src = esc(c->fs[i].source), *bin = esc(c->fs[i].binary);
		const char *mode = c->fs[i].cache < ELEMENTSOF(cache_modes) ? cache_modes[c->fs[i].cache] : NULL;

		if (!tag || !src || !bin) {
			free(b.s);
			return -ENOMEM;
		}
		put(&b, "    <filesystem type='mount' accessmode='passthrough'>\n");
		put(&b, "      <driver type='virtiofs' queue='1024'/>\n");
		if (mode)
			put(&b, "      <binary path='%s'>\n        <cache mode='%s'/>\n      </binary>\n", bin, mode);
		else
			put(&b, "      <binary path='%s'/>\n", bin);
		put(&b, "      <source dir='%s'/>\n      <target dir='%s'/>\n    </filesystem>\n", src, tag);
	}
	for (size_t i = 0; i < c->n_disks; i++) {
		_cleanup_free_ char *path = esc(c->disks[i].path), *name = esc(c->disks[i].name);
		char dev[8];

		if (!path || !name) {
			free(b.s);
			return -ENOMEM;
		}
		disk_dev(i, dev);
		/* error_policy=report: a full host disk gives the guest EIO
		 * instead of pausing it forever. */
		put(&b, "    <disk type='file' device='disk'>\n");
		put(&b, "      <driver name='qemu' type='%s' cache='%s' io='threads' discard='unmap' "
			"error_policy='report' rerror_policy='report'/>\n",
		    c->disks[i].qcow2 ? "qcow2" : "raw", c->disks[i].ephemeral ? "unsafe" : "writeback");
		put(&b, "      <source file='%s'/>\n      <target dev='%s' bus='virtio'/>\n", path, dev);
		put(&b, "      <serial>%s</serial>\n    </disk>\n", name);
	}
	if (c->bridge) {
		_cleanup_free_ char *br = esc(c->bridge), *mac = esc(c->mac), *tap = esc(c->tap);

		if (!br || !mac || !tap) {
			free(b.s);
			return -ENOMEM;
		}
		put(&b, "    <interface type='bridge'>\n      <mac address='%s'/>\n      <source bridge='%s'/>\n", mac, br);
		put(&b, "      <target dev='%s'/>\n      <model type='virtio'/>\n", tap);
		if (c->queues > 1)
			put(&b, "      <driver queues='%u'/>\n", c->queues);
		put(&b, "    </interface>\n");
	}
	put(&b, "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n");
	put(&b, "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n");
	/* No source path: libvirt makes the sockets where it (on whichever
	 * host) keeps them; vmd reads both through libvirt. */
	put(&b, "    <channel type='unix'>\n      <target type='virtio' name='io.vmd.notify'/>\n    </channel>\n");
	put(&b, "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
		"    </channel>\n");
	put(&b, "    <controller type='usb' model='none'/>\n");
	put(&b, "    <memballoon model='none'/>\n");
	put(&b, "  </devices>\n</domain>\n");
	if (b.oom) {
		free(b.s);
		return -ENOMEM;
	}
	*ret = b.s;
	return 0;
}

int domxml_metadata_text(const char *element, char **ret)
{
	const char *start = strchr(element, '>'), *end = strrchr(element, '<');
	char *s;

	/* "<x/>" has no text; ">..." has no start tag. */
	if (!start || !end || start == element || end <= start || start[-1] == '/' || end[1] != '/')
		return -EBADMSG;
	start++;
	s = strndup(start, (size_t)(end - start));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}
