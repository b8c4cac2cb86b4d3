/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "addr.h"
#include "cmdline.h"
#include "def.h"

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

int kernel_cmdline(const struct vm_def *d, const char *system, const char *closure_params, char **ret)
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
