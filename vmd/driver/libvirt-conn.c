/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Connections to libvirtd: the struct lv that holds them, one per URI,
 * reopened with backoff when libvirtd goes away (the domains followed on
 * one are looked at again then), and the questions vmd asks of a
 * connection's host (lv_check_files, lv_has_kvm). */
#include <inttypes.h>
#include <sys/random.h>

#include "libvirt-internal.h"
#include "log.h"

#define RETRY_MIN_USEC (100 * USEC_PER_MSEC)
#define RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3

struct lv {
	struct loop *loop;
	struct lv_conn *conns;
	void (*on_up)(struct lv_conn *c, void *userdata);
	void *on_up_userdata;
};

int lv_new(struct loop *l, struct lv **ret)
{
	struct loop *registered = lv_event_loop();
	struct lv *lv;

	if (registered && registered != l)
		return -EBUSY;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	lv->loop = l;
	*ret = lv;
	return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque);

static void conn_drop(struct lv_conn *c)
{
	if (!c->conn)
		return;
	if (c->lifecycle_id >= 0)
		sym_virConnectDomainEventDeregisterAny(c->conn, c->lifecycle_id);
	if (c->reboot_id >= 0)
		sym_virConnectDomainEventDeregisterAny(c->conn, c->reboot_id);
	c->lifecycle_id = c->reboot_id = -1;
	sym_virConnectUnregisterCloseCallback(c->conn, on_close);
	sym_virConnectClose(c->conn);
	c->conn = NULL;
	c->up = false;
}

static void conn_schedule_retry(struct lv_conn *c)
{
	c->delay = c->delay ? c->delay * 2 : RETRY_MIN_USEC;
	if (c->delay > RETRY_MAX_USEC)
		c->delay = RETRY_MAX_USEC;
	loop_timer_set(c->retry, now_usec() + c->delay);
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	struct lv_conn *c = opaque;

	(void)conn;
	if (!c->up)
		return;
	log_warning("libvirt %s: connection lost (%s); reconnecting", c->uri,
		    reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "no keepalive answer" :
		    reason == VIR_CONNECT_CLOSE_REASON_EOF       ? "libvirtd closed it" :
								   "error");
	c->up = false;
	lv_doms_link_down(c);
	c->delay = 0;
	/* Not from inside libvirt's own callback. */
	loop_timer_set(c->retry, now_usec());
}

/* Opens the connection and looks again at every domain followed on it. */
static int conn_open(struct lv_conn *c)
{
	virConnectPtr conn = sym_virConnectOpen(c->uri);

	if (!conn)
		return lv_errno();
	c->conn = conn;
	c->lifecycle_id = sym_virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
							    VIR_DOMAIN_EVENT_CALLBACK(lv_dom_on_lifecycle), c, NULL);
	c->reboot_id = sym_virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
							 VIR_DOMAIN_EVENT_CALLBACK(lv_dom_on_reboot), c, NULL);
	if (c->lifecycle_id < 0 || c->reboot_id < 0 || sym_virConnectRegisterCloseCallback(conn, on_close, c, NULL) < 0) {
		int r = lv_errno();

		conn_drop(c);
		return r;
	}
	/* A libvirtd that hangs (or a host that vanished) is noticed in
	 * about 15 s; local connections may not support it. */
	(void)sym_virConnectSetKeepAlive(conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
	c->up = true;
	c->delay = 0;
	lv_doms_link_up(c);
	return 0;
}

static void on_retry(struct loop_source *s, void *userdata)
{
	struct lv_conn *c = userdata;
	int r;

	(void)s;
	conn_drop(c);
	r = conn_open(c);
	if (r < 0) {
		log_debug("libvirt %s: still not reachable: %s", c->uri, lv_error());
		conn_schedule_retry(c);
		return;
	}
	log_info("libvirt %s: connected", c->uri);
	if (c->lv->on_up)
		c->lv->on_up(c, c->lv->on_up_userdata);
}

static void conn_free(struct lv_conn *c)
{
	for (struct lv_conn **pp = &c->lv->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	while (c->doms)
		lv_dom_free(c->doms);
	conn_drop(c);
	loop_source_freep(&c->retry);
	free(c->uri);
	free(c);
}

int lv_conn_get(struct lv *lv, const char *uri, bool probe, struct lv_conn **ret)
{
	struct lv_conn *c;
	int r;

	for (c = lv->conns; c; c = c->next)
		if (streq(c->uri, uri)) {
			*ret = c;
			return 0;
		}
	r = lv_event_init(lv->loop);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->lv = lv;
	c->lifecycle_id = c->reboot_id = -1;
	c->uri = strdup(uri);
	if (!c->uri || loop_add_timer(lv->loop, 0, on_retry, c, &c->retry) < 0) {
		free(c->uri);
		free(c);
		return -ENOMEM;
	}
	c->next = lv->conns;
	lv->conns = c;
	r = conn_open(c);
	if (r < 0 && probe) {
		log_debug("libvirt %s: not reachable: %s", uri, lv_error());
		conn_free(c);
		return r;
	}
	if (r < 0) {
		log_warning("libvirt %s: cannot connect (%s); retrying in the background", uri, lv_error());
		conn_schedule_retry(c);
	}
	*ret = c;
	return 0;
}

bool lv_conn_is_up(const struct lv_conn *c)
{
	return c->up;
}

const char *lv_conn_uri(const struct lv_conn *c)
{
	return c->uri;
}

void lv_on_conn_up(struct lv *lv, void (*cb)(struct lv_conn *c, void *userdata), void *userdata)
{
	lv->on_up = cb;
	lv->on_up_userdata = userdata;
}

void lv_free(struct lv *lv)
{
	if (!lv)
		return;
	while (lv->conns)
		conn_free(lv->conns);
	free(lv);
}

int lv_check_files(struct lv_conn *c, const char *dir, const char *const *names, const char **ret_missing)
{
	_cleanup_free_ char *xml = NULL;
	virStoragePoolPtr pool;
	uint64_t rnd = 0;
	int r = 0;

	if (!c->up)
		return -ENOTCONN;
	/* A transient pool is how libvirt lists a directory on its host. */
	for (const char *p = dir; *p; p++)
		if (*p == '<' || *p == '>' || *p == '&' || *p == '\'' || *p == '"')
			return -EINVAL;
	(void)getrandom(&rnd, sizeof(rnd), 0);
	xml = xasprintf("<pool type='dir'><name>vmd-check-%016" PRIx64 "</name><target><path>%s</path></target></pool>",
			rnd, dir);
	if (!xml)
		return -ENOMEM;
	pool = sym_virStoragePoolCreateXML(c->conn, xml, 0);
	if (!pool) {
		r = lv_errno();
		*ret_missing = dir;
		return r == -EIO ? -ENOENT : r;
	}
	for (size_t i = 0; names[i]; i++) {
		virStorageVolPtr v = sym_virStorageVolLookupByName(pool, names[i]);

		if (!v) {
			*ret_missing = names[i];
			r = -ENOENT;
			break;
		}
		sym_virStorageVolFree(v);
	}
	sym_virStoragePoolDestroy(pool);
	sym_virStoragePoolFree(pool);
	sym_virResetLastError();
	return r;
}

int lv_has_kvm(struct lv_conn *c)
{
	_cleanup_free_ char *caps = NULL;

	if (!c->up)
		return -ENOTCONN;
	caps = sym_virConnectGetCapabilities(c->conn);
	if (!caps)
		return lv_errno();
	return strstr(caps, "<domain type='kvm'") != NULL;
}
