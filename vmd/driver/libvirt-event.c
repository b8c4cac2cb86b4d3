/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt's event loop on vmd's (virEventRegisterImpl), and lv_event_init(),
 * which loads and initialises libvirt and registers it on first use. */
#include <fcntl.h>

#include "libvirt-internal.h"
#include "log.h"

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

int lv_event_init(struct loop *l)
{
	int r;

	if (ev.loop)
		return ev.loop == l ? 0 : -EBUSY;
	r = lv_load();
	if (r < 0)
		return r;
	if (sym_virInitialize() < 0)
		return -EIO;
	r = loop_add_timer(l, 0, ev_reap, NULL, &ev.reaper);
	if (r < 0)
		return r;
	ev.loop = l;
	sym_virSetErrorFunc(NULL, quiet_errors);
	sym_virEventRegisterImpl(ev_add_handle, ev_update_handle, ev_remove_handle, ev_add_timeout,
				 ev_update_timeout, ev_remove_timeout);
	return 0;
}

struct loop *lv_event_loop(void)
{
	return ev.loop;
}
