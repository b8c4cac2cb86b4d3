/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "defset.h"
#include "plan.h"

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
	struct host_resources res;
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
			       "when everything is valid. Prints FILE: FIELD: warning: reason for what\n"
			       "this host cannot give a VM (more memory than it has, more vCPUs than\n"
			       "CPUs), which leaves the exit status alone.\n");
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
	/* Images: read and verified (not unpacked). */
	for (size_t i = 0; i < set.n; i++) {
		struct schema_errors e = {};

		if (!set.entries[i].def->image || !host->image_system)
			continue;
		if (plan_check_image(host, set.entries[i].def, &e) < 0 && e.n == 0)
			schema_error(&e, "image", "cannot be checked");
		if (e.n > 0) {
			defset_errors_add(&errors, set.entries[i].file, &e);
			r = -EINVAL;
		}
		schema_errors_clear(&e);
	}
	if (r < 0) {
		defset_errors_print(&errors, stdout);
		bad = true;
	}
	defset_errors_clear(&errors);
	/* This host's limits: warnings, printed the same way, that leave
	 * the exit status alone. */
	host_resources_read(&res);
	defset_check_fit(&set, &res, &errors);
	defset_errors_print(&errors, stdout);
	defset_errors_clear(&errors);
	defset_clear(&set);
	return bad ? EXIT_BAD_INPUT : EXIT_OK;
}

int cmd_schema(int argc, char **argv)
{
	_cleanup_free_ char *text = NULL;
	json_t *doc;

	if (argc > 1 && (streq(argv[1], "-h") || streq(argv[1], "--help"))) {
		printf("Usage: vmd schema\n\n"
		       "Prints the schema of definitions and host settings as JSON: for every\n"
		       "field its type, Nix name, default, limits, allowed values and meaning.\n"
		       "nix/schema.json is this output; the NixOS module builds its options\n"
		       "from it.\n");
		return EXIT_OK;
	}
	if (argc > 1) {
		fprintf(stderr, "vmd schema: takes no arguments (see vmd schema --help)\n");
		return EXIT_BAD_INPUT;
	}
	doc = json_pack("{s:i, s:s, s:o?, s:o?}", "schema_version", 1, "vmd_version", VMD_VERSION,
			"definition", def_describe(), "settings", host_config_describe());
	if (!doc || !json_object_get(doc, "definition") || !json_object_get(doc, "settings")) {
		json_decref(doc);
		fprintf(stderr, "vmd schema: out of memory\n");
		return EXIT_RUNTIME;
	}
	text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (!text || printf("%s\n", text) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, "vmd schema: cannot write the schema\n");
		return EXIT_RUNTIME;
	}
	return EXIT_OK;
}
