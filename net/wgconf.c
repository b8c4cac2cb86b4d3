/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "util.h"
#include "wgconf.h"

/* Every value comes from validated settings; a line break would still
 * add a line of the attacker's choosing, so refuse it here too. */
static bool plain(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < ' ' || *s == 0x7f)
			return false;
	return true;
}

char *wg_conf_format(const struct wg_conf *c)
{
	char priv[WG_KEY_B64_LEN + 1], pub[WG_KEY_B64_LEN + 1], keepalive[48] = "";
	char *s;

	if (!plain(c->vm) || !plain(c->address) || !plain(c->hub) || !plain(c->endpoint) ||
	    !plain(c->allowed_ips)) {
		errno = EINVAL;
		return NULL;
	}
	wg_key_to_base64(c->private_key, priv);
	wg_key_to_base64(c->hub_public_key, pub);
	if (c->keepalive)
		snprintf(keepalive, sizeof(keepalive), "PersistentKeepalive = %u\n", c->keepalive);
	s = xasprintf("# Written by vmd for VM %s at every start; edits are overwritten.\n"
		      "[Interface]\n"
		      "PrivateKey = %s\n"
		      "Address = %s\n"
		      "\n"
		      "[Peer]\n"
		      "# The host's WireGuard hub %s\n"
		      "PublicKey = %s\n"
		      "Endpoint = %s:%u\n"
		      "AllowedIPs = %s\n"
		      "%s",
		      c->vm, priv, c->address, c->hub, pub, c->endpoint, c->port, c->allowed_ips, keepalive);
	sodium_memzero(priv, sizeof(priv));
	if (!s)
		errno = ENOMEM;
	return s;
}
