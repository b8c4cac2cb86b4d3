/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What a VM is called on the host's network, derived from its name: its
 * host interface (tap) name and its MAC address, and the MAC's text form.
 * Pure functions: definitions are checked with them (and for clashes
 * across the set) as well as links made with them. */

#include <stdint.h>

#define LINK_NAME_MAX 15 /* IFNAMSIZ - 1 */

/* The host-side interface name for a VM: "vm-NAME" when that fits in
 * LINK_NAME_MAX, else "vm-" + the first 6 characters + "-" + 5 hex digits
 * of a hash of the whole name. buf must hold LINK_NAME_MAX + 1 bytes. */
void link_name_for_vm(const char *vm, char *buf);

/* A stable locally administered MAC for a VM: 52:54:00 (QEMU's prefix)
 * followed by 3 bytes of a hash of its name. */
void mac_for_vm(const char *vm, uint8_t mac[6]);
/* "52:54:00:12:34:56" <-> bytes; parse accepts only that form and refuses
 * multicast addresses. */
int mac_parse(const char *s, uint8_t mac[6]);
void mac_format(const uint8_t mac[6], char buf[18]);

/* An interface name: 1..15 characters (IFNAMSIZ), letters, digits, '-',
 * '_' and '.', not starting with '-' or '.'. */
const char *check_ifname(const char *s);
