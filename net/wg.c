/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The WireGuard device API of wg.h: opening a device on its backend,
 * handing each call to that backend (wg-kernel.c or wg-uapi.c), and the
 * struct wg_device both of them fill. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wg-internal.h"

int wg_open(enum wg_backend backend, const char *ifname, const char *uapi_dir, struct wg **ret)
{
	_cleanup_(wg_closep) struct wg *w = NULL;
	int r;

	if (!*ifname || strlen(ifname) > LINK_NAME_MAX || strchr(ifname, '/'))
		return -EINVAL;
	if (backend != WG_BACKEND_UAPI && backend != WG_BACKEND_KERNEL)
		return -EOPNOTSUPP;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->backend = backend;
	snprintf(w->ifname, sizeof(w->ifname), "%s", ifname);
	if (backend == WG_BACKEND_KERNEL)
		r = wg_kernel_open(w);
	else
		r = wg_uapi_open(w, uapi_dir);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(w);
	return 0;
}

void wg_close(struct wg *w)
{
	if (!w)
		return;
	free(w->socket_path);
	wg_kernel_close(w);
	free(w);
}

void wg_device_clear(struct wg_device *d)
{
	for (size_t i = 0; i < d->n_peers; i++)
		strv_free(d->peers[i].allowed_ips);
	free(d->peers);
	sodium_memzero(d, sizeof(*d));
}

int wg_device_set(struct wg *w, const uint8_t private_key[WG_KEY_LEN], uint16_t listen_port)
{
	if (w->backend == WG_BACKEND_KERNEL)
		return wg_kernel_device_set(w, private_key, listen_port);
	return wg_uapi_device_set(w, private_key, listen_port);
}

int wg_peer_add(struct wg *w, const struct wg_peer *peer)
{
	if (w->backend == WG_BACKEND_KERNEL)
		return wg_kernel_peer_set(w, peer, false);
	return wg_uapi_peer_set(w, peer, false);
}

int wg_peer_remove(struct wg *w, const uint8_t public_key[WG_KEY_LEN])
{
	struct wg_peer p = {};

	memcpy(p.public_key, public_key, WG_KEY_LEN);
	if (w->backend == WG_BACKEND_KERNEL)
		return wg_kernel_peer_set(w, &p, true);
	return wg_uapi_peer_set(w, &p, true);
}

int wg_device_get(struct wg *w, struct wg_device *ret)
{
	if (w->backend == WG_BACKEND_KERNEL)
		return wg_kernel_device_get(w, ret);
	return wg_uapi_device_get(w, ret);
}

const struct wg_peer *wg_device_find_peer(const struct wg_device *d, const uint8_t public_key[WG_KEY_LEN])
{
	for (size_t i = 0; i < d->n_peers; i++)
		if (memcmp(d->peers[i].public_key, public_key, WG_KEY_LEN) == 0)
			return &d->peers[i];
	return NULL;
}
