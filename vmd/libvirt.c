/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <sys/random.h>

#include "domxml.h"
#include "libvirt.h"
#include "log.h"

/* libvirt is loaded when a VM first needs it, not linked: its libraries
 * (glib, libxml2, gnutls and some fifty more) would triple the resident
 * size of every vmd, also of one that never runs a libvirt domain. The
 * prototypes still come from libvirt's headers, so every call is checked. */
#define LIBVIRT_SYMBOLS(X) \
	X(virConnectClose) \
	X(virConnectDomainEventDeregisterAny) \
	X(virConnectDomainEventRegisterAny) \
	X(virConnectGetCapabilities) \
	X(virConnectListAllDomains) \
	X(virConnectOpen) \
	X(virConnectRegisterCloseCallback) \
	X(virConnectSetKeepAlive) \
	X(virConnectUnregisterCloseCallback) \
	X(virDomainCreateXML) \
	X(virDomainDestroy) \
	X(virDomainFree) \
	X(virDomainGetID) \
	X(virDomainGetMetadata) \
	X(virDomainGetName) \
	X(virDomainGetState) \
	X(virDomainGetUUID) \
	X(virDomainIsActive) \
	X(virDomainLookupByName) \
	X(virDomainLookupByUUID) \
	X(virDomainOpenChannel) \
	X(virDomainOpenConsole) \
	X(virDomainResume) \
	X(virDomainSetMetadata) \
	X(virDomainShutdownFlags) \
	X(virEventRegisterImpl) \
	X(virGetLastError) \
	X(virGetLastErrorMessage) \
	X(virInitialize) \
	X(virResetLastError) \
	X(virSetErrorFunc) \
	X(virStoragePoolCreateXML) \
	X(virStoragePoolDestroy) \
	X(virStoragePoolFree) \
	X(virStorageVolFree) \
	X(virStorageVolLookupByName) \
	X(virStreamAbort) \
	X(virStreamEventAddCallback) \
	X(virStreamEventRemoveCallback) \
	X(virStreamFinish) \
	X(virStreamFree) \
	X(virStreamNew) \
	X(virStreamRecv)
#define LIBVIRT_QEMU_SYMBOLS(X) \
	X(virDomainQemuAgentCommand)
#define DECLARE(name) static typeof(name) *sym_##name;
LIBVIRT_SYMBOLS(DECLARE)
LIBVIRT_QEMU_SYMBOLS(DECLARE)
#undef DECLARE

static int load_libvirt(void)
{
	static int loaded; /* 1, or -errno once failed */
	void *lib, *qlib;

	if (loaded)
		return loaded < 0 ? loaded : 0;
	lib = dlopen(VMD_LIBVIRT_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	qlib = lib ? dlopen(VMD_LIBVIRT_QEMU_LIBRARY, RTLD_NOW | RTLD_LOCAL) : NULL;
	if (!lib || !qlib) {
		log_error("cannot load libvirt (Debian: the libvirt0 package): %s", dlerror());
		loaded = -EOPNOTSUPP;
		return loaded;
	}
#define RESOLVE(name)                                                                        \
	if (!(sym_##name = (typeof(name) *)dlsym(lib, #name))) {                             \
		log_error(VMD_LIBVIRT_LIBRARY " has no %s: too old a libvirt", #name);       \
		loaded = -EOPNOTSUPP;                                                       \
		return loaded;                                                              \
	}
	LIBVIRT_SYMBOLS(RESOLVE)
#undef RESOLVE
	lib = qlib;
#define RESOLVE(name)                                                                        \
	if (!(sym_##name = (typeof(name) *)dlsym(lib, #name))) {                             \
		log_error(VMD_LIBVIRT_QEMU_LIBRARY " has no %s: too old a libvirt", #name); \
		loaded = -EOPNOTSUPP;                                                       \
		return loaded;                                                              \
	}
	LIBVIRT_QEMU_SYMBOLS(RESOLVE)
#undef RESOLVE
	loaded = 1;
	return 0;
}

#define RETRY_MIN_USEC (100 * USEC_PER_MSEC)
#define RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3

/* libvirt's event loop on vmd's: handles are fds, timeouts are timers. A
 * removed one is freed (and libvirt's free callback called) from the loop
 * afterwards, never inside the call that removed it, as libvirt wants. */
struct ev_handle {
	int id;
	int fd, loop_fd; /* libvirt's fd, and vmd's duplicate of it in epoll */
	int events;      /* VIR_EVENT_HANDLE_* */
	virEventHandleCallback cb;
	void *opaque;
	virFreeCallback ff;
	struct loop_source *src;
	bool removed;
	struct ev_handle *next;
};

struct ev_timeout {
	int id;
	int frequency; /* ms; -1 off, 0 every iteration */
	virEventTimeoutCallback cb;
	void *opaque;
	virFreeCallback ff;
	struct loop_source *src;
	bool removed;
	struct ev_timeout *next;
};

static struct {
	struct loop *loop;
	struct ev_handle *handles;
	struct ev_timeout *timeouts;
	int next_id;
	struct loop_source *reaper;
} ev;

struct lv {
	struct loop *loop;
	struct lv_conn *conns;
	void (*on_up)(struct lv_conn *c, void *userdata);
	void *on_up_userdata;
};

struct lv_conn {
	struct lv *lv;
	char *uri;
	virConnectPtr conn;
	int lifecycle_id, reboot_id;
	bool up;
	usec_t delay;
	struct loop_source *retry;
	struct lv_dom *doms;
	struct lv_conn *next;
};

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

static uint32_t epoll_events(int events)
{
	return (events & VIR_EVENT_HANDLE_READABLE ? EPOLLIN : 0) | (events & VIR_EVENT_HANDLE_WRITABLE ? EPOLLOUT : 0);
}

/* Unlinks and frees the removed entries of a list of ev_handle or
 * ev_timeout (both lay out removed, opaque, ff and next alike). */
#define REAP(head, type)                                      \
	for (type **pp = &(head); *pp;) {                     \
		type *e = *pp;                                \
		if (!e->removed) {                            \
			pp = &e->next;                        \
			continue;                             \
		}                                             \
		*pp = e->next;                                \
		if (e->ff)                                    \
			e->ff(e->opaque);                     \
		free(e);                                      \
	}

static void ev_reap(struct loop_source *s, void *userdata)
{
	(void)s;
	(void)userdata;
	REAP(ev.handles, struct ev_handle);
	REAP(ev.timeouts, struct ev_timeout);
}
#undef REAP

static void ev_handle_io(struct loop_source *s, int fd, uint32_t revents, void *userdata)
{
	struct ev_handle *h = userdata;
	int events = 0;

	(void)s;
	(void)fd;
	if (revents & EPOLLIN)
		events |= VIR_EVENT_HANDLE_READABLE;
	if (revents & EPOLLOUT)
		events |= VIR_EVENT_HANDLE_WRITABLE;
	if (revents & EPOLLERR)
		events |= VIR_EVENT_HANDLE_ERROR;
	if (revents & EPOLLHUP)
		events |= VIR_EVENT_HANDLE_HANGUP;
	if (!h->removed)
		h->cb(h->id, h->fd, events, h->opaque);
}

/* A handle waiting for nothing is out of epoll altogether: epoll would
 * still report hangups on it, which libvirt does not expect. */
static int ev_handle_arm(struct ev_handle *h)
{
	if (h->events == 0) {
		loop_source_freep(&h->src);
		return 0;
	}
	if (h->src)
		return loop_io_set_events(h->src, epoll_events(h->events));
	return loop_add_io(ev.loop, h->loop_fd, epoll_events(h->events), ev_handle_io, h, &h->src);
}

static struct ev_handle *find_handle(int id)
{
	for (struct ev_handle *h = ev.handles; h; h = h->next)
		if (h->id == id && !h->removed)
			return h;
	return NULL;
}

static struct ev_timeout *find_timeout(int id)
{
	for (struct ev_timeout *t = ev.timeouts; t; t = t->next)
		if (t->id == id && !t->removed)
			return t;
	return NULL;
}

static int ev_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff)
{
	struct ev_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return -1;
	*h = (struct ev_handle){ .id = ++ev.next_id, .fd = fd, .events = events, .cb = cb, .opaque = opaque, .ff = ff };
	/* Our own file description reference: epoll cannot take one fd
	 * twice, and libvirt may watch one fd from two places. */
	h->loop_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (h->loop_fd < 0 || ev_handle_arm(h) < 0) {
		safe_close(h->loop_fd);
		free(h);
		return -1;
	}
	h->next = ev.handles;
	ev.handles = h;
	return h->id;
}

static void ev_update_handle(int id, int events)
{
	struct ev_handle *h = find_handle(id);

	if (!h)
		return;
	h->events = events;
	if (ev_handle_arm(h) < 0)
		log_error("libvirt event loop: cannot watch fd %d", h->fd);
}

static int ev_remove_handle(int id)
{
	struct ev_handle *h = find_handle(id);

	if (!h)
		return -1;
	h->removed = true;
	loop_source_freep(&h->src);
	h->loop_fd = safe_close(h->loop_fd);
	loop_timer_set(ev.reaper, now_usec());
	return 0;
}

static void ev_timeout_fire(struct loop_source *s, void *userdata)
{
	struct ev_timeout *t = userdata;

	if (t->removed || t->frequency < 0)
		return;
	/* Re-armed first: the callback may change or remove it. */
	loop_timer_set(s, now_usec() + (usec_t)t->frequency * USEC_PER_MSEC);
	t->cb(t->id, t->opaque);
}

static void ev_timeout_arm(struct ev_timeout *t)
{
	/* 0 means "on every iteration": as soon as the loop comes round. */
	loop_timer_set(t->src, t->frequency < 0 ? 0 : now_usec() + (usec_t)t->frequency * USEC_PER_MSEC);
}

static int ev_add_timeout(int frequency, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
	struct ev_timeout *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	*t = (struct ev_timeout){ .id = ++ev.next_id, .frequency = frequency, .cb = cb, .opaque = opaque, .ff = ff };
	if (loop_add_timer(ev.loop, 0, ev_timeout_fire, t, &t->src) < 0) {
		free(t);
		return -1;
	}
	ev_timeout_arm(t);
	t->next = ev.timeouts;
	ev.timeouts = t;
	return t->id;
}

static void ev_update_timeout(int id, int frequency)
{
	struct ev_timeout *t = find_timeout(id);

	if (!t)
		return;
	t->frequency = frequency;
	ev_timeout_arm(t);
}

static int ev_remove_timeout(int id)
{
	struct ev_timeout *t = find_timeout(id);

	if (!t)
		return -1;
	t->removed = true;
	loop_source_freep(&t->src);
	loop_timer_set(ev.reaper, now_usec());
	return 0;
}

/* libvirt would print every error on stderr; vmd logs them once, with
 * context, where it handles them. */
static void quiet_errors(void *userdata, virErrorPtr e)
{
	(void)userdata;
	(void)e;
}

const char *lv_error(void)
{
	const char *m;

	if (!ev.loop)
		return "libvirt could not be loaded";
	m = sym_virGetLastErrorMessage();

	return m ? m : "unknown libvirt error";
}

/* libvirt's error as -errno, for the callers' own decisions. */
static int lv_errno(void)
{
	virErrorPtr e = ev.loop ? sym_virGetLastError() : NULL;

	if (!e)
		return -EIO;
	switch (e->code) {
	case VIR_ERR_NO_DOMAIN:
		return -ENOENT;
	case VIR_ERR_OPERATION_INVALID:
		return -EINVAL;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_CONFIG_UNSUPPORTED:
	case VIR_ERR_OPERATION_UNSUPPORTED:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
		return -EOPNOTSUPP;
	case VIR_ERR_OPERATION_TIMEOUT:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		return -ETIMEDOUT;
	case VIR_ERR_AUTH_FAILED:
	case VIR_ERR_AUTH_CANCELLED:
	case VIR_ERR_ACCESS_DENIED:
		return -EACCES;
	case VIR_ERR_SYSTEM_ERROR:
		return e->int1 > 0 ? -e->int1 : -EIO;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_RPC:
		return -ECONNREFUSED;
	default:
		return -EIO;
	}
}

int lv_new(struct loop *l, struct lv **ret)
{
	struct lv *lv;

	if (ev.loop && ev.loop != l)
		return -EBUSY;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	lv->loop = l;
	*ret = lv;
	return 0;
}

/* On the first connection: load libvirt, put its event loop on ours (it
 * must be registered before any connection opens). */
static int lv_init(struct lv *lv)
{
	int r;

	if (ev.loop)
		return ev.loop == lv->loop ? 0 : -EBUSY;
	r = load_libvirt();
	if (r < 0)
		return r;
	if (sym_virInitialize() < 0)
		return -EIO;
	r = loop_add_timer(lv->loop, 0, ev_reap, NULL, &ev.reaper);
	if (r < 0)
		return r;
	ev.loop = lv->loop;
	sym_virSetErrorFunc(NULL, quiet_errors);
	sym_virEventRegisterImpl(ev_add_handle, ev_update_handle, ev_remove_handle, ev_add_timeout,
				 ev_update_timeout, ev_remove_timeout);
	return 0;
}

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

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
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
static void on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque)
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
	for (struct lv_dom *d = c->doms; d; d = d->next) {
		streams_close(d);
		if (d->dom) {
			sym_virDomainFree(d->dom);
			d->dom = NULL;
		}
		if (!d->ended && d->ops->link)
			d->ops->link(d, false, d->userdata);
	}
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
							    VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), c, NULL);
	c->reboot_id = sym_virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_REBOOT,
							 VIR_DOMAIN_EVENT_CALLBACK(on_reboot), c, NULL);
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
	for (struct lv_dom *d = c->doms, *next; d; d = next) {
		next = d->next;
		if (d->ended)
			continue;
		d->dom = sym_virDomainLookupByUUID(conn, d->uuid);
		if (!d->dom || sym_virDomainIsActive(d->dom) != 1) {
			dom_ended(d, LV_END_GONE, "the domain was gone when libvirtd came back");
			continue;
		}
		if (open_streams(d) < 0)
			log_warning("%s: reopening its console after reconnecting: %s", d->name, lv_error());
		if (d->ops->link)
			d->ops->link(d, true, d->userdata);
	}
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
	r = lv_init(lv);
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

int lv_dom_create(struct lv_conn *c, const char *xml, bool autodestroy, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret)
{
	struct lv_dom *d = NULL;
	virDomainPtr dom;
	int r;

	if (!c->up)
		return -ENOTCONN;
	dom = sym_virDomainCreateXML(c->conn, xml, VIR_DOMAIN_START_PAUSED | (autodestroy ? VIR_DOMAIN_START_AUTODESTROY : 0));
	if (!dom)
		return lv_errno();
	r = dom_new(c, dom, true, ops, userdata, &d);
	if (r < 0) {
		sym_virDomainDestroy(dom);
		sym_virDomainFree(dom);
		return r;
	}
	r = open_streams(d);
	if (r == 0 && sym_virDomainResume(dom) < 0)
		r = lv_errno();
	if (r < 0) {
		/* The event for this destroy must not reach the caller. */
		d->ended = true;
		sym_virDomainDestroy(dom);
		lv_dom_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

int lv_dom_attach(struct lv_conn *c, const char *name, bool want_notify, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret)
{
	struct lv_dom *d = NULL;
	virDomainPtr dom;
	int r;

	if (!c->up)
		return -ENOTCONN;
	dom = sym_virDomainLookupByName(c->conn, name);
	if (!dom)
		return lv_errno();
	if (sym_virDomainIsActive(dom) != 1) {
		sym_virDomainFree(dom);
		return -ESRCH;
	}
	r = dom_new(c, dom, want_notify, ops, userdata, &d);
	if (r < 0) {
		sym_virDomainFree(dom);
		return r;
	}
	r = open_streams(d);
	if (r < 0) {
		lv_dom_free(d);
		return r;
	}
	*ret = d;
	return 0;
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
