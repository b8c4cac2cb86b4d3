/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A WireGuard device (the host hub), behind one small API. Backends:
 *
 *   WG_BACKEND_UAPI    the cross-platform userspace API of wireguard-go:
 *                      text lines on <uapi_dir>/<ifname>.sock;
 *   WG_BACKEND_KERNEL  the kernel module through generic netlink (the
 *                      "wireguard" family), on a link made with
 *                      wireguard_link_create() (link.h).
 *
 * Calls block for at most WG_IO_TIMEOUT_USEC: the messages are small and
 * the peer is local. Keys travel as bytes; nothing here logs them. */

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "wgkey.h"

#define WG_IO_TIMEOUT_USEC (5 * 1000000ULL)
#define WG_UAPI_DIR "/run/wireguard"

enum wg_backend { WG_BACKEND_UAPI, WG_BACKEND_KERNEL };

struct wg_peer {
	uint8_t public_key[WG_KEY_LEN];
	char endpoint[64];            /* "ip:port" or "" */
	uint16_t keepalive;           /* seconds; 0: off */
	char **allowed_ips;           /* "10.77.0.2/32", NULL-terminated */
	/* Only from wg_device_get: */
	uint64_t rx_bytes, tx_bytes;
	int64_t last_handshake_sec;   /* 0: never */
};

struct wg_device {
	bool has_private_key;
	uint8_t private_key[WG_KEY_LEN];
	uint16_t listen_port;
	struct wg_peer *peers;
	size_t n_peers;
};

struct wg;

/* uapi_dir NULL means WG_UAPI_DIR; the kernel backend ignores it. The
 * kernel backend works in the network namespace of the calling thread at
 * open time, and wants the link there: -ENODEV if there is none, -ENOTTY
 * if it is not WireGuard, -EOPNOTSUPP if the kernel has no WireGuard. */
int wg_open(enum wg_backend backend, const char *ifname, const char *uapi_dir, struct wg **ret);
void wg_close(struct wg *w);
static inline void wg_closep(struct wg **w)
{
	if (*w)
		wg_close(*w);
	*w = NULL;
}

int wg_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port);
/* Adds the peer, or updates it (its allowed IPs are replaced). */
int wg_peer_add(struct wg *w, const struct wg_peer *peer);
/* Removing a peer the device does not have is not an error. */
int wg_peer_remove(struct wg *w, const uint8_t public_key[WG_KEY_LEN]);
int wg_device_get(struct wg *w, struct wg_device *ret);
void wg_device_clear(struct wg_device *d);
const struct wg_peer *wg_device_find_peer(const struct wg_device *d, const uint8_t public_key[WG_KEY_LEN]);

/* The UAPI text format, pure (tested and fuzzed on its own). */
char *wg_uapi_format_device(const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port);
char *wg_uapi_format_peer(const struct wg_peer *peer, bool remove);
/* Parses a "get" reply (up to the blank line). Returns the errno the
 * device reported as -errno, -EBADMSG on malformed input, or 0. */
int wg_uapi_parse_get(const char *text, struct wg_device *ret);
