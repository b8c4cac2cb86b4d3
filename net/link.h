/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Host links through rtnetlink (libnl-route): bridges, their addresses,
 * the taps that connect VMs to them, and WireGuard links. No shelling out
 * to ip(8).
 *
 * Functions return 0 or a negative errno; libnl's own codes are mapped.
 * All of them work in the network namespace of the calling thread. */

#include <stdbool.h>
#include <stdint.h>

#include "netname.h"

#define TAP_QUEUES_MAX 16

struct nl_sock;

int netlink_open(struct nl_sock **ret);
void netlink_close(struct nl_sock *sk);
static inline void netlink_closep(struct nl_sock **sk)
{
	if (*sk)
		netlink_close(*sk);
	*sk = NULL;
}

/* Makes sure a bridge called name exists and is up. An existing bridge is
 * adopted (*ret_created = false); an existing link of another kind is
 * -EEXIST. cidr (e.g. "10.0.0.1/24"), if not NULL, is added unless the
 * bridge has it already. */
int bridge_ensure(struct nl_sock *sk, const char *name, const char *cidr, bool *ret_created);

/* The ifindex of name, or -ENODEV. *ret_is_bridge tells its kind. */
int link_lookup(struct nl_sock *sk, const char *name, bool *ret_is_bridge);

/* Makes sure a WireGuard link called name exists and is up, like
 * bridge_ensure: an existing WireGuard link is adopted (*ret_created =
 * false), a link of another kind is -EEXIST, and a kernel without
 * WireGuard gives -EOPNOTSUPP. Keys and peers are set through wg.h. */
int wireguard_link_create(struct nl_sock *sk, const char *name, bool *ret_created);

/* The ifindex of the WireGuard link name: -ENODEV if there is no such
 * link, -ENOTTY if it is of another kind. */
int wireguard_link_lookup(struct nl_sock *sk, const char *name);

/* Adds cidr (if not NULL, and unless the link has it) to the existing link
 * name and brings it up. */
int link_configure(struct nl_sock *sk, const char *name, const char *cidr);

/* How many links have name as their master (a bridge's ports). */
int link_count_ports(struct nl_sock *sk, const char *name);

/* Deletes the link name; a missing one is not an error. */
int link_delete(struct nl_sock *sk, const char *name);

/* Creates tap name with queues queues (1..TAP_QUEUES_MAX; more than one
 * makes a multiqueue tap) and vnet headers, enslaves it to bridge and
 * brings it up. The tap is not persistent: it lives as long as one of the
 * fds put in fds[0..queues-1] is open, so it goes away with the QEMU that
 * holds them, even after a crash. On failure nothing is left. */
int tap_create(struct nl_sock *sk, const char *name, const char *bridge, unsigned queues, int *fds);
