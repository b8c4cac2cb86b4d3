/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "cli.h"

void cli_print_errors(const char *file, const struct schema_errors *errors)
{
	for (size_t i = 0; i < errors->n; i++)
		printf("%s: %s\n", file, errors->lines[i]);
	fflush(stdout);
}

int cli_load_host(const char *path, struct host_config **ret)
{
	struct schema_errors errors = {};
	int r;

	r = host_config_load(path, ret, &errors);
	if (r < 0)
		cli_print_errors(path ? path : HOST_CONFIG_DEFAULT_PATH, &errors);
	schema_errors_clear(&errors);
	return r;
}
