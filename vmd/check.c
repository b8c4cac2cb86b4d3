/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"
#include "log.h"

struct loaded {
	char *file;
	struct vm_def *def;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory contributes its *.json files, sorted, not recursively. */
static int expand(const char *path, char ***files)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	size_t first = strv_length(*files);

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return strv_extend(files, path);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.' || n < 6 || !streq(de->d_name + n - 5, ".json"))
			continue;
		if (strv_consume(files, path_join(path, de->d_name)) < 0) {
			closedir(d);
			return -ENOMEM;
		}
	}
	closedir(d);
	qsort(*files + first, strv_length(*files) - first, sizeof(char *), cmp_str);
	return 0;
}

int cmd_check(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_strv_free_ char **files = NULL;
	struct loaded *loaded = NULL;
	size_t n_loaded = 0;
	bool bad = false;
	int c;

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
	if (cli_load_host(config, &host) < 0)
		bad = true;

	for (int i = optind; i < argc; i++)
		if (expand(argv[i], &files) < 0) {
			printf("%s: (root): cannot read directory\n", argv[i]);
			bad = true;
		}
	loaded = calloc(strv_length(files) + 1, sizeof(*loaded));
	if (!loaded)
		return log_error_errno(ENOMEM, "%m"), EXIT_RUNTIME;

	for (size_t i = 0; files && files[i]; i++) {
		struct schema_errors errors = {};
		struct vm_def *d = NULL;

		if (def_load_file(files[i], &d, &errors) == 0) {
			/* Only the host that runs a VM can check its closure. */
			def_check_system(d, host ? host->store_dir : "/nix/store", NULL, &errors);
			for (size_t j = 0; j < n_loaded; j++)
				if (streq(loaded[j].def->name, d->name)) {
					schema_error(&errors, "name", "\"%s\" is already defined in %s", d->name,
						     loaded[j].file);
					break;
				}
		}
		if (errors.n > 0) {
			cli_print_errors(files[i], &errors);
			bad = true;
		}
		schema_errors_clear(&errors);
		if (d) {
			loaded[n_loaded].file = files[i];
			loaded[n_loaded++].def = d;
		}
	}
	for (size_t i = 0; i < n_loaded; i++)
		def_free(loaded[i].def);
	free(loaded);
	return bad ? EXIT_BAD_INPUT : EXIT_OK;
}
