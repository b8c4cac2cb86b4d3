/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Host settings fuzzer: as fuzz-def.c, for /etc/vmd/vmd.json. */
#include <stdint.h>

#include "host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct schema_errors errors = {};
	struct host_config *a = NULL, *b = NULL;

	if (host_config_parse_buffer((const char *)data, size, &a, &errors) == 0) {
		json_t *ja = host_config_to_json(a), *jb;
		char *text = ja ? json_dumps(ja, JSON_SORT_KEYS) : NULL;

		if (!text || host_config_parse_buffer(text, strlen(text), &b, &errors) != 0)
			abort();
		jb = host_config_to_json(b);
		if (!jb || !json_equal(ja, jb))
			abort();
		json_decref(ja);
		json_decref(jb);
		free(text);
		host_config_free(a);
		host_config_free(b);
	} else if (errors.n == 0)
		abort();
	schema_errors_clear(&errors);
	return 0;
}
