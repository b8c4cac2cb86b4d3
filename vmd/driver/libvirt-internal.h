/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What vmd/libvirt-*.c share; nothing outside them includes this.
 * libvirt-load.c loads libvirt and turns its errors into vmd's,
 * libvirt-event.c runs libvirt's event loop on vmd's, libvirt-conn.c keeps
 * the connections and libvirt-dom.c the domains followed on them. */

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "libvirt.h"
#include "loop.h"

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
	X(virStreamRecv) \
	X(virStreamSend)
#define LIBVIRT_QEMU_SYMBOLS(X) \
	X(virDomainQemuAgentCommand)
#define DECLARE(name) extern typeof(name) *sym_##name;
LIBVIRT_SYMBOLS(DECLARE)
LIBVIRT_QEMU_SYMBOLS(DECLARE)
#undef DECLARE

/* libvirt-load.c */
/* Fills the sym_* table on the first call: 0, or -EOPNOTSUPP (for good). */
int lv_load(void);
/* libvirt's error as -errno, for the callers' own decisions. */
int lv_errno(void);

/* libvirt-event.c */
/* On the first connection: load libvirt, put its event loop on l (it
 * must be registered before any connection opens). */
int lv_event_init(struct loop *l);
/* The loop lv_event_init() put libvirt on; NULL before (or if it failed). */
struct loop *lv_event_loop(void);

/* libvirt-conn.c: a connection, one per URI. */
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

/* libvirt-dom.c: a connection's side of its domains. */
int lv_dom_on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque);
void lv_dom_on_reboot(virConnectPtr conn, virDomainPtr dom, void *opaque);
/* The connection was lost: drops what the domains held through it. */
void lv_doms_link_down(struct lv_conn *c);
/* The connection is back: looks again at every domain followed on it. */
void lv_doms_link_up(struct lv_conn *c);
