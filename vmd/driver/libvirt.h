/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* vmd's side of libvirt: one connection per URI, libvirt's event loop run
 * inside vmd's own (virEventRegisterImpl), reconnection with backoff when
 * libvirtd goes away, and the few domain operations the libvirt driver
 * needs. Domains are transient (virDomainCreateXML): vmd, not libvirt,
 * keeps the definitions.
 *
 * Every call is synchronous towards libvirtd (libvirt's remote client does
 * its own I/O), so each one blocks the loop for a round trip; events,
 * streams and keepalives come through the loop. Errors are -errno, with
 * libvirt's message in lv_error() until the next call. */

#include <stdbool.h>
#include <stddef.h>

#include "loop.h"

struct lv;
struct lv_conn;
struct lv_dom;

/* Registers libvirt's event loop on l; once per process. */
int lv_new(struct loop *l, struct lv **ret);
/* Closes every connection; domains keep running. */
void lv_free(struct lv *lv);

/* libvirt's message for the last failure in this thread. */
const char *lv_error(void);

/* The connection to uri: opened now if libvirtd answers, else retried in
 * the background with backoff (lv_conn_is_up() tells). probe: only try
 * once now, and keep nothing if that fails (-ECONNREFUSED and the like). */
int lv_conn_get(struct lv *lv, const char *uri, bool probe, struct lv_conn **ret);
bool lv_conn_is_up(const struct lv_conn *c);
const char *lv_conn_uri(const struct lv_conn *c);
/* Called each time a connection comes up after a retry, once the domains
 * it follows have been looked at. */
void lv_on_conn_up(struct lv *lv, void (*cb)(struct lv_conn *c, void *userdata), void *userdata);

/* Why a domain ended, as the lifecycle events say. */
enum lv_end {
	LV_END_GUEST_POWEROFF, /* the guest shut down */
	LV_END_SHUTDOWN,       /* shut down from the host (vmd or virsh) */
	LV_END_DESTROYED,      /* destroyed from the host (vmd or virsh) */
	LV_END_REBOOT,         /* the guest reset (vmd destroyed it then) */
	LV_END_CRASHED,        /* QEMU crashed or failed */
	LV_END_GONE,           /* not there any more after a reconnect */
};

struct lv_dom_ops {
	void (*ended)(struct lv_dom *d, enum lv_end why, const char *detail, void *userdata);
	/* Console output and io.vmd.notify data, through libvirt streams. */
	void (*console)(struct lv_dom *d, const char *buf, size_t n, void *userdata);
	void (*notify)(struct lv_dom *d, const char *buf, size_t n, void *userdata);
	/* libvirtd went away (up false) or came back with the domain still
	 * running (up true). Optional. */
	void (*link)(struct lv_dom *d, bool up, void *userdata);
};

/* Starts a transient domain from xml: paused, then its console and notify
 * streams are opened, then it runs, so no output is lost. autodestroy:
 * libvirt kills it when this connection closes (vmd run). */
int lv_dom_create(struct lv_conn *c, const char *xml, bool autodestroy, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret);
/* Follows a running domain (adoption): opens its console, and its notify
 * stream if want_notify. */
int lv_dom_attach(struct lv_conn *c, const char *name, bool want_notify, const struct lv_dom_ops *ops,
		  void *userdata, struct lv_dom **ret);
/* Stops following; the domain runs on. NULL is fine. */
void lv_dom_free(struct lv_dom *d);

int lv_dom_shutdown(struct lv_dom *d); /* ACPI power button */
int lv_dom_destroy(struct lv_dom *d);
/* A guest-agent command (JSON text); *ret the reply. */
int lv_dom_agent(struct lv_dom *d, const char *cmd, int timeout_s, char **ret);
/* Typed input for the console stream: bytes taken, -EAGAIN, -ENOTCONN. */
ssize_t lv_dom_console_send(struct lv_dom *d, const void *buf, size_t n);
/* Replaces vmd's metadata element's text on the running domain. */
int lv_dom_set_metadata(struct lv_dom *d, const char *text);
bool lv_dom_is_up(const struct lv_dom *d);
/* 1 if libvirt has it running (or paused), 0 if it is shutting down or
 * off, -errno if it cannot tell. */
int lv_dom_running(struct lv_dom *d);
const char *lv_dom_name(const struct lv_dom *d);
/* The domain's id on its host (what virsh list shows), 0 if not known. */
int lv_dom_id(const struct lv_dom *d);

/* The running domains of c that carry vmd's metadata: names and the
 * metadata's text, as parallel NULL-terminated lists. */
int lv_list_ours(struct lv_conn *c, char ***ret_names, char ***ret_texts);
/* Destroys a domain by name (one of ours that no VM wants any more). */
int lv_destroy_by_name(struct lv_conn *c, const char *name);

/* Whether path names a directory on c's host that holds all of names
 * (files or symlinks), checked through a transient storage pool:
 * 0 yes, -ENOENT with *ret_missing set to the first one missing. */
int lv_check_files(struct lv_conn *c, const char *dir, const char *const *names, const char **ret_missing);
/* Whether c's host offers KVM domains for x86_64. */
int lv_has_kvm(struct lv_conn *c);
