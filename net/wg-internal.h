/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What net/wg*.c share; nothing outside them includes this. wg.c holds
 * the API of wg.h and hands each call to the device's backend:
 * wg-kernel.c (the kernel module through generic netlink) or wg-uapi.c
 * (wireguard-go's UAPI socket). A backend's functions return what wg.h
 * says of the call they serve; peer_set adds or updates the peer (its
 * allowed IPs replaced), or with remove, removes it. */

#include <stdbool.h>
#include <stdint.h>

#include "link.h"
#include "wg.h"

struct nl_sock;

struct wg {
	enum wg_backend backend;
	char ifname[LINK_NAME_MAX + 1];
	char *socket_path;      /* UAPI */
	struct nl_sock *genl;   /* kernel */
	int family;
};

/* The kernel backend (wg-kernel.c). */
int wg_kernel_open(struct wg *w);
void wg_kernel_close(struct wg *w);
int wg_kernel_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port);
int wg_kernel_peer_set(struct wg *w, const struct wg_peer *p, bool remove);
int wg_kernel_device_get(struct wg *w, struct wg_device *ret);

/* The wireguard-go backend (wg-uapi.c); its text format is public, in wg.h. */
int wg_uapi_open(struct wg *w, const char *uapi_dir);
int wg_uapi_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port);
int wg_uapi_peer_set(struct wg *w, const struct wg_peer *p, bool remove);
int wg_uapi_device_get(struct wg *w, struct wg_device *ret);
