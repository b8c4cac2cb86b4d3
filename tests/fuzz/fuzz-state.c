/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VM state parser: state.json in a run directory, and the metadata of
 * a libvirt domain (base64 of the same text), which anyone with access to
 * that libvirtd could have written. The first byte picks which. Whatever
 * parses must format and parse again to the same state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "domxml.h"
#include "vmstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const char *buf, size_t len)
{
	struct vmstate a = {}, b = {};
	char *text;

	if (vmstate_parse(buf, len, &a) < 0)
		return;
	text = vmstate_format(&a);
	if (!text || vmstate_parse(text, strlen(text), &b) < 0 || !def_equal(a.def, b.def) ||
	    a.ready != b.ready || a.restarts != b.restarts || a.n_shares != b.n_shares ||
	    a.qemu.pid != b.qemu.pid || !a.instance != !b.instance || (a.instance && strcmp(a.instance, b.instance)))
		abort();
	free(text);
	vmstate_clear(&a);
	vmstate_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *inner = NULL, *json = NULL;
	size_t len;

	if (size < 1)
		return 0;
	if (!(data[0] & 1)) {
		roundtrip((const char *)data + 1, size - 1);
		return 0;
	}
	/* As a domain's metadata element: <vmd:vm ...>BASE64</vmd:vm>. */
	text = strndup((const char *)data + 1, size - 1);
	if (text && domxml_metadata_text(text, &inner) == 0 && base64_decode(inner, strlen(inner), &json, &len) == 0)
		roundtrip(json, len);
	free(json);
	free(inner);
	free(text);
	return 0;
}
