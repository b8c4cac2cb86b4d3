/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The WireGuard UAPI reply parser: what wireguard-go (or anything that
 * answers on its socket) sends back. Whatever parses must also survive
 * formatting its peers again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct wg_device d;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (wg_uapi_parse_get(text, &d) == 0) {
		for (size_t i = 0; i < d.n_peers; i++)
			free(wg_uapi_format_peer(&d.peers[i], false));
		wg_device_clear(&d);
	}
	free(text);
	return 0;
}
