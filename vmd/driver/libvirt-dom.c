/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Domains: started (lv_dom_create) or followed (lv_dom_attach) on a
 * connection, their console and io.vmd.notify streams, their lifecycle
 * events (and what a lost or regained connection means for them), the
 * operations on them (shutdown, destroy, guest agent, metadata), and
 * vmd's domains on a connection (lv_list_ours, lv_destroy_by_name). */
#include "domxml.h"
#include "libvirt-internal.h"
#include "log.h"

struct lv_dom {
	struct lv_conn *c;
	char *name;
	unsigned char uuid[VIR_UUID_BUFLEN];
	virDomainPtr dom;
	int id;
	virStreamPtr console, notify;
	bool want_notify;
	bool guest_shutdown; /* a SHUTDOWN event said the guest asked */
	bool rebooting;      /* vmd destroys it because the guest reset */
	bool ended;
	const struct lv_dom_ops *ops;
	void *userdata;
	struct lv_dom *next;
};

static void streams_close(struct lv_dom *d)
{
	virStreamPtr *ss[] = { &d->console, &d->notify };

	for (size_t i = 0; i < ELEMENTSOF(ss); i++) {
		if (!*ss[i])
			continue;
		sym_virStreamEventRemoveCallback(*ss[i]);
		sym_virStreamAbort(*ss[i]);
		sym_virStreamFree(*ss[i]);
		*ss[i] = NULL;
	}
}

static void on_stream(virStreamPtr st, int events, void *opaque)
{
	struct lv_dom *d = opaque;
	bool console = st == d->console;
	char buf[16384];
	int n;

	(void)events;
	for (;;) {
		n = sym_virStreamRecv(st, buf, sizeof(buf));
		if (n == -2)
			return; /* nothing more for now */
		if (n <= 0)
			break;
		if (console && d->ops->console)
			d->ops->console(d, buf, (size_t)n, d->userdata);
		else if (!console && d->ops->notify)
			d->ops->notify(d, buf, (size_t)n, d->userdata);
		/* The callback may have let go of the domain. */
		if ((console ? d->console : d->notify) != st)
			return;
	}
	/* End of the stream (the domain is going) or an error. */
	sym_virStreamEventRemoveCallback(st);
	if (n == 0)
		sym_virStreamFinish(st);
	else
		sym_virStreamAbort(st);
	sym_virStreamFree(st);
	if (console)
		d->console = NULL;
	else
		d->notify = NULL;
}

ssize_t lv_dom_console_send(struct lv_dom *d, const void *buf, size_t n)
{
	int k;

	if (!d->console)
		return -ENOTCONN;
	k = sym_virStreamSend(d->console, buf, n);
	if (k == -2)
		return -EAGAIN;
	return k < 0 ? -EIO : k;
}

static int open_stream(struct lv_dom *d, bool console)
{
	virStreamPtr st = sym_virStreamNew(d->c->conn, VIR_STREAM_NONBLOCK);
	int r;

	if (!st)
		return lv_errno();
	/* FORCE: a previous daemon's stream may still hold it. */
	r = console ? sym_virDomainOpenConsole(d->dom, NULL, st, VIR_DOMAIN_CONSOLE_FORCE) :
		      sym_virDomainOpenChannel(d->dom, "io.vmd.notify", st, VIR_DOMAIN_CHANNEL_FORCE);
	if (r == 0)
		r = sym_virStreamEventAddCallback(st, VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR |
							  VIR_STREAM_EVENT_HANGUP,
					      on_stream, d, NULL);
	if (r < 0) {
		r = lv_errno();
		sym_virStreamAbort(st);
		sym_virStreamFree(st);
		return r;
	}
	if (console)
		d->console = st;
	else
		d->notify = st;
	return 0;
}

static int open_streams(struct lv_dom *d)
{
	int r = open_stream(d, true);

	if (r == 0 && d->want_notify)
		r = open_stream(d, false);
	return r;
}

static struct lv_dom *find_dom(struct lv_conn *c, virDomainPtr dom)
{
	unsigned char uuid[VIR_UUID_BUFLEN];

	if (sym_virDomainGetUUID(dom, uuid) < 0)
		return NULL;
	for (struct lv_dom *d = c->doms; d; d = d->next)
		if (memcmp(d->uuid, uuid, sizeof(uuid)) == 0)
			return d;
	return NULL;
}

static void dom_ended(struct lv_dom *d, enum lv_end why, const char *detail)
{
	if (d->ended)
		return;
	d->ended = true;
	streams_close(d);
	d->ops->ended(d, why, detail, d->userdata);
}

int lv_dom_on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct lv_conn *c = opaque;
	struct lv_dom *d = find_dom(c, dom);

	(void)conn;
	if (!d)
		return 0;
	if (event == VIR_DOMAIN_EVENT_SHUTDOWN && detail == VIR_DOMAIN_EVENT_SHUTDOWN_GUEST)
		d->guest_shutdown = true;
	if (event != VIR_DOMAIN_EVENT_STOPPED)
		return 0;
	switch (detail) {
	case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
		if (d->guest_shutdown)
			dom_ended(d, LV_END_GUEST_POWEROFF, "the guest powered off");
		else
			dom_ended(d, LV_END_SHUTDOWN, "shut down from the host");
		break;
	case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
		if (d->rebooting)
			dom_ended(d, LV_END_REBOOT, "the guest rebooted (or its kernel panicked)");
		else
			dom_ended(d, LV_END_DESTROYED, "destroyed through libvirt");
		break;
	case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
		dom_ended(d, LV_END_CRASHED, "the guest crashed");
		break;
	case VIR_DOMAIN_EVENT_STOPPED_FAILED:
		dom_ended(d, LV_END_CRASHED, "QEMU failed or was killed");
		break;
	default:
		dom_ended(d, LV_END_CRASHED, "saved, migrated or reverted through libvirt");
	}
	return 0;
}

/* A guest reset is the end of the boot: its ephemeral disks must be made
 * afresh, which only a new domain gets. */
void lv_dom_on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque)
{
	struct lv_conn *c = opaque;
	struct lv_dom *d = find_dom(c, dom);

	(void)conn;
	if (!d || d->ended)
		return;
	d->rebooting = true;
	if (sym_virDomainDestroy(d->dom) < 0)
		log_warning("%s: destroying it after the guest reset: %s", d->name, lv_error());
}

void lv_doms_link_down(struct lv_conn *c)
{
	for (struct lv_dom *d = c->doms; d; d = d->next) {
		streams_close(d);
		if (d->dom) {
			sym_virDomainFree(d->dom);
			d->dom = NULL;
		}
		if (!d->ended && d->ops->link)
			d->ops->link(d, false, d->userdata);
	}
}

void lv_doms_link_up(struct lv_conn *c)
{
	for (struct lv_dom *d = c->doms, *next; d; d = next) {
		next = d->next;
		if (d->ended)
			continue;
		d->dom = sym_virDomainLookupByUUID(c->conn, d->uuid);
		if (!d->dom || sym_virDomainIsActive(d->dom) != 1) {
			dom_ended(d, LV_END_GONE, "the domain was gone when libvirtd came back");
			continue;
		}
		if (open_streams(d) < 0)
			log_warning("%s: reopening its console after reconnecting: %s", d->name, lv_error());
		if (d->ops->link)
			d->ops->link(d, true, d->userdata);
	}
}

static int dom_new(struct lv_conn *c, virDomainPtr dom, bool want_notify, const struct lv_dom_ops *ops,
		   void *userdata, struct lv_dom **ret)
{
	struct lv_dom *d = calloc(1, sizeof(*d));
	const char *name = sym_virDomainGetName(dom);

	if (!d || !name || !(d->name = strdup(name)) || sym_virDomainGetUUID(dom, d->uuid) < 0) {
		free(d ? d->name : NULL);
		free(d);
		return -ENOMEM;
	}
	d->c = c;
	d->dom = dom;
	d->id = (int)sym_virDomainGetID(dom);
	d->want_notify = want_notify;
	d->ops = ops;
	d->userdata = userdata;
	d->next = c->doms;
	c->doms = d;
	*ret = d;
	return 0;
}

/* Follows dom (taken): opens its streams, and lets a domain created
 * paused run. A created domain that cannot be followed is destroyed. */
static int dom_follow(struct lv_conn *c, virDomainPtr dom, bool created, bool want_notify,
		      const struct lv_dom_ops *ops, void *userdata, struct lv_dom **ret)
{
	struct lv_dom *d = NULL;
	int r = dom_new(c, dom, want_notify, ops, userdata, &d);

	if (r < 0) {
		if (created)
			sym_virDomainDestroy(dom);
		sym_virDomainFree(dom);
		return r;
	}
	r = open_streams(d);
	if (r == 0 && created && sym_virDomainResume(dom) < 0)
		r = lv_errno();
	if (r < 0) {
		if (created) {
			/* The event for this destroy must not reach the caller. */
			d->ended = true;
			sym_virDomainDestroy(dom);
		}
		lv_dom_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

int lv_dom_create(struct lv_conn *c, const char *xml, bool autodestroy, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret)
{
	virDomainPtr dom;

	if (!c->up)
		return -ENOTCONN;
	dom = sym_virDomainCreateXML(c->conn, xml, VIR_DOMAIN_START_PAUSED | (autodestroy ? VIR_DOMAIN_START_AUTODESTROY : 0));
	if (!dom)
		return lv_errno();
	return dom_follow(c, dom, true, true, ops, userdata, ret);
}

int lv_dom_attach(struct lv_conn *c, const char *name, bool want_notify, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret)
{
	virDomainPtr dom;

	if (!c->up)
		return -ENOTCONN;
	dom = sym_virDomainLookupByName(c->conn, name);
	if (!dom)
		return lv_errno();
	if (sym_virDomainIsActive(dom) != 1) {
		sym_virDomainFree(dom);
		return -ESRCH;
	}
	return dom_follow(c, dom, false, want_notify, ops, userdata, ret);
}

void lv_dom_free(struct lv_dom *d)
{
	if (!d)
		return;
	for (struct lv_dom **pp = &d->c->doms; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	streams_close(d);
	if (d->dom)
		sym_virDomainFree(d->dom);
	free(d->name);
	free(d);
}

bool lv_dom_is_up(const struct lv_dom *d)
{
	return d->dom && d->c->up && !d->ended;
}

int lv_dom_running(struct lv_dom *d)
{
	int state, reason;

	if (!lv_dom_is_up(d))
		return -ENOTCONN;
	if (sym_virDomainGetState(d->dom, &state, &reason, 0) < 0)
		return lv_errno();
	return state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED || state == VIR_DOMAIN_BLOCKED ||
	       state == VIR_DOMAIN_PMSUSPENDED;
}

const char *lv_dom_name(const struct lv_dom *d)
{
	return d->name;
}

int lv_dom_id(const struct lv_dom *d)
{
	return d->id > 0 ? d->id : 0;
}

int lv_dom_shutdown(struct lv_dom *d)
{
	if (!lv_dom_is_up(d))
		return -ENOTCONN;
	return sym_virDomainShutdownFlags(d->dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0 ? lv_errno() : 0;
}

int lv_dom_destroy(struct lv_dom *d)
{
	int r;

	if (!lv_dom_is_up(d))
		return -ENOTCONN;
	if (sym_virDomainDestroy(d->dom) == 0)
		return 0;
	r = lv_errno();
	/* Already gone: its STOPPED event is on the way. */
	return r == -EINVAL ? 0 : r;
}

int lv_dom_agent(struct lv_dom *d, const char *cmd, int timeout_s, char **ret)
{
	char *reply;

	if (!lv_dom_is_up(d))
		return -ENOTCONN;
	reply = sym_virDomainQemuAgentCommand(d->dom, cmd, timeout_s, 0);
	if (!reply)
		return lv_errno();
	*ret = reply;
	return 0;
}

int lv_dom_set_metadata(struct lv_dom *d, const char *text)
{
	_cleanup_free_ char *xml = xasprintf("<vm>%s</vm>", text);

	if (!xml)
		return -ENOMEM;
	if (!lv_dom_is_up(d))
		return -ENOTCONN;
	return sym_virDomainSetMetadata(d->dom, VIR_DOMAIN_METADATA_ELEMENT, xml, DOMXML_NS_PREFIX, DOMXML_NS,
				    VIR_DOMAIN_AFFECT_LIVE) < 0 ?
		       lv_errno() :
		       0;
}

int lv_list_ours(struct lv_conn *c, char ***ret_names, char ***ret_texts)
{
	_cleanup_strv_free_ char **names = NULL, **texts = NULL;
	virDomainPtr *doms = NULL;
	int n, r = 0;

	if (!c->up)
		return -ENOTCONN;
	n = sym_virConnectListAllDomains(c->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0)
		return lv_errno();
	for (int i = 0; i < n; i++) {
		char *element = sym_virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, DOMXML_NS, 0);
		char *text = NULL;

		if (element && r == 0 && domxml_metadata_text(element, &text) == 0) {
			if (strv_extend(&names, sym_virDomainGetName(doms[i])) < 0 || strv_extend(&texts, text) < 0)
				r = -ENOMEM;
		}
		free(text);
		free(element);
		sym_virDomainFree(doms[i]);
	}
	free(doms);
	sym_virResetLastError();
	if (r < 0)
		return r;
	/* Two lists of the same length, both NULL-terminated (or NULL). */
	*ret_names = TAKE_PTR(names);
	*ret_texts = TAKE_PTR(texts);
	return 0;
}

int lv_destroy_by_name(struct lv_conn *c, const char *name)
{
	virDomainPtr dom;
	int r = 0;

	if (!c->up)
		return -ENOTCONN;
	dom = sym_virDomainLookupByName(c->conn, name);
	if (!dom)
		return lv_errno();
	if (sym_virDomainDestroy(dom) < 0)
		r = lv_errno();
	sym_virDomainFree(dom);
	return r;
}
