/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The wg-quick(8) configuration vmd writes into a VM's WireGuard key
 * directory: the VM's own key and address, and the host hub as its only
 * peer. wg-quick reads it as it is (the NixOS guest); the tiny guest reads
 * the same lines in its init. Pure: tested on its own. */

#include <stdint.h>

#include "wgkey.h"

struct wg_conf {
	const char *vm;                    /* for the comment line */
	const uint8_t *private_key;        /* WG_KEY_LEN bytes */
	const char *address;               /* "10.77.0.2/32" */
	const char *hub;                   /* the hub's name, for the comment */
	const uint8_t *hub_public_key;     /* WG_KEY_LEN bytes */
	const char *endpoint;              /* "10.0.0.1" */
	uint16_t port;
	const char *allowed_ips;           /* the hub's network, "10.77.0.0/24" */
	uint16_t keepalive;                /* 0: none */
};

#define WG_CONF_NAME "wg0.conf"

/* The file's text, or NULL (ENOMEM, or a value that would break a line:
 * EINVAL). The caller wipes and frees it: it holds the private key. */
char *wg_conf_format(const struct wg_conf *c);
