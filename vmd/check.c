/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "defset.h"

int cmd_check(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_host_config_ struct host_config *host = NULL;
	struct defset set = {};
	struct defset_errors errors = {};
	bool bad = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0)
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			printf("Usage: vmd check [-c SETTINGS] PATH...\n\n"
			       "Validates VM definitions (files, or directories of *.json) and the host\n"
			       "settings. Prints FILE: FIELD: reason for every error and exits 1; exits 0\n"
			       "when everything is valid.\n");
			return EXIT_OK;
		default:
			return EXIT_BAD_INPUT;
		}
	if (optind >= argc) {
		fprintf(stderr, "vmd check: no PATH given (see vmd check --help)\n");
		return EXIT_BAD_INPUT;
	}

	/* Settings first: -c given explicitly must exist and be valid. */
	if (cli_load_host(config, &host) < 0) {
		struct schema_errors ignored = {};

		bad = true;
		/* Still check the definitions, against the defaults. */
		host_config_parse_buffer("", 0, &host, &ignored);
		schema_errors_clear(&ignored);
	}
	/* Closures are checked on this host, against its store, and networks
	 * against its settings. */
	r = defset_load(argv + optind, host, &set, &errors);
	if (r < 0) {
		defset_errors_print(&errors, stdout);
		bad = true;
	}
	defset_errors_clear(&errors);
	defset_clear(&set);
	return bad ? EXIT_BAD_INPUT : EXIT_OK;
}
