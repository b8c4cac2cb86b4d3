/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"
#include "defset.h"
#include "image.h"
#include "log.h"
#include "plan.h"

/* vmd image: the cache of unpacked container images under
 * <state_dir>/images (images/image.h). */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vmd image [-c SETTINGS] list\n"
		"       vmd image [-c SETTINGS] unpack DEF.json|IMAGE [--ref REF]\n"
		"       vmd image [-c SETTINGS] remove KEY...\n"
		"       vmd image [-c SETTINGS] prune [--dry-run]\n\n"
		"The cache of unpacked container images, <state_dir>/images: one read-only\n"
		"tree per image content digest (KEY, sha256-...), which every VM of that\n"
		"image boots from, with a fresh writable layer of its own.\n\n"
		"  list     every cached image: KEY, whether a VM uses it, its size, its source\n"
		"  unpack   fill the cache for an image (a definition's, or an OCI layout\n"
		"           directory or docker-archive file); prints its KEY\n"
		"  remove   remove cached images; one a VM uses is refused\n"
		"  prune    remove every cached image that no definition in the settings'\n"
		"           definitions_dir names and no VM uses (--dry-run: only list them)\n\n"
		"  -c, --config FILE   host settings (default %s)\n",
		HOST_CONFIG_DEFAULT_PATH);
}

static bool is_definition(const char *path)
{
	struct stat st;
	size_t n = strlen(path);

	return n > 5 && streq(path + n - 5, ".json") && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int do_list(const char *cache)
{
	struct image_cache_entry *e = NULL;
	size_t n = 0;
	int r = image_cache_list(cache, &e, &n);

	if (r < 0) {
		fprintf(stderr, "vmd image list: %s: %s\n", cache, strerror(-r));
		return EXIT_RUNTIME;
	}
	printf("%-71s %-6s %9s  %s\n", "KEY", "IN-USE", "MIB", "SOURCE");
	for (size_t i = 0; i < n; i++)
		printf("%-71s %-6s %9.1f  %s%s%s\n", e[i].key, e[i].in_use ? "yes" : "no",
		       (double)e[i].bytes / (1 << 20), e[i].source ? e[i].source : "-", e[i].ref ? " " : "",
		       e[i].ref ? e[i].ref : "");
	image_cache_entries_free(e, n);
	return EXIT_OK;
}

/* The hidden form the daemon runs as its unpack helper (plan_unpack_argv()),
 * so that an unpack never blocks its loop: the settings come on the command
 * line (the daemon's, as it loaded them); success is one line on stdout,
 * "unpacked KEY" or "cached KEY", and the daemon, which times the helper,
 * says the rest. */
struct unpack_helper {
	const char *cache;
	uint64_t max_mib;
	bool setuid;
};

static int do_unpack(const struct host_config *host, const char *cache, const char *what, const char *ref,
		     const struct unpack_helper *helper)
{
	_cleanup_(schema_errors_clear) struct schema_errors errors = {};
	_cleanup_def_ struct vm_def *def = NULL;
	_cleanup_(image_cached_clear) struct image_cached c = { .lock_fd = -EBADF };
	_cleanup_free_ char *summary = NULL;
	struct image_unpack_opts o = {
		.allow_setuid = helper ? helper->setuid : host->image_setuid,
		.max_bytes = (helper ? helper->max_mib : host->image_max_mib) << 20,
	};
	const char *image = what;
	usec_t t0 = now_usec();
	int r;

	if (helper) {
		if (what[0] != '/') {
			fprintf(stderr, "vmd image unpack: %s: not an absolute path\n", what);
			return EXIT_BAD_INPUT;
		}
	} else if (is_definition(what)) {
		if (def_load_file(what, &def, &errors) == 0 && !def->image)
			schema_error(&errors, "image", "the definition names no image");
		if (errors.n > 0) {
			cli_print_errors(what, &errors);
			return EXIT_BAD_INPUT;
		}
		image = def->image;
		ref = ref ? ref : def->image_ref;
	} else if (what[0] != '/') {
		fprintf(stderr, "vmd image unpack: %s: give an absolute path (or a definition, *.json)\n", what);
		return EXIT_BAD_INPUT;
	}
	r = host ? mkdir_p(host->state_dir, 0700) : 0;
	if (r < 0) {
		fprintf(stderr, "vmd image unpack: creating %s: %s\n", host->state_dir, strerror(-r));
		return EXIT_RUNTIME;
	}
	r = image_cache_get(cache, image, ref, &o, &c, &errors);
	if (r < 0) {
		for (size_t i = 0; i < errors.n; i++)
			fprintf(stderr, "%s: %s\n", image, errors.lines[i]);
		if (errors.n == 0)
			fprintf(stderr, "vmd image unpack: %s: %s\n", image, strerror(-r));
		return r == -EINVAL ? EXIT_BAD_INPUT : EXIT_RUNTIME;
	}
	if (helper) {
		printf("%s %s\n", c.unpacked ? "unpacked" : "cached", c.key);
		return EXIT_OK;
	}
	summary = image_cached_summary(&c, c.unpacked, now_usec() - t0);
	if (summary)
		fprintf(stderr, "%s\n", summary);
	printf("%s\n", c.key);
	return EXIT_OK;
}

static int do_remove(const char *cache, char **keys)
{
	int ret = EXIT_OK;

	for (; *keys; keys++) {
		int r = image_cache_remove(cache, *keys);

		if (r == -EBUSY)
			fprintf(stderr, "vmd image remove: %s: a VM uses it (stop that VM first)\n", *keys);
		else if (r == -ENOENT || r == -EINVAL)
			fprintf(stderr, "vmd image remove: %s: no such image in %s\n", *keys, cache);
		else if (r < 0)
			fprintf(stderr, "vmd image remove: %s: %s\n", *keys, strerror(-r));
		else
			printf("removed %s\n", *keys);
		if (r < 0)
			ret = r == -EBUSY || r == -ENOENT || r == -EINVAL ? EXIT_BAD_INPUT : EXIT_RUNTIME;
	}
	return ret;
}

/* What the definitions name: each image's key, and its path (kept too,
 * whatever its key: an image file that cannot be read now may be back). */
static int named_images(const struct host_config *host, const char *cache, char ***keys, char ***paths)
{
	char *dirs[] = { host->definitions_dir, NULL };
	struct defset set = {};
	struct defset_errors errors = {};
	int r = defset_load(dirs, host, &set, &errors);

	if (r < 0) {
		defset_errors_print(&errors, stderr);
		fprintf(stderr, "vmd image prune: the definitions in %s have errors: nothing removed\n",
			host->definitions_dir);
		defset_errors_clear(&errors);
		defset_clear(&set);
		return -EINVAL;
	}
	for (size_t i = 0; r == 0 && i < set.n; i++) {
		const struct vm_def *d = set.entries[i].def;
		struct schema_errors e = {};
		struct image_info info = {};

		if (!d->image)
			continue;
		r = strv_extend(paths, d->image);
		if (r == 0 && image_inspect(d->image, d->image_ref, cache, &info, &e) == 0)
			r = strv_extend(keys, info.key);
		image_info_clear(&info);
		schema_errors_clear(&e);
	}
	defset_errors_clear(&errors);
	defset_clear(&set);
	return r;
}

static int do_prune(const struct host_config *host, const char *cache, bool dry_run)
{
	_cleanup_strv_free_ char **keys = NULL, **paths = NULL;
	struct image_cache_entry *e = NULL;
	size_t n = 0, removed = 0;
	int r, ret = EXIT_OK;

	r = named_images(host, cache, &keys, &paths);
	if (r < 0)
		return r == -EINVAL ? EXIT_BAD_INPUT : EXIT_RUNTIME;
	r = image_cache_list(cache, &e, &n);
	if (r < 0) {
		fprintf(stderr, "vmd image prune: %s: %s\n", cache, strerror(-r));
		return EXIT_RUNTIME;
	}
	for (size_t i = 0; i < n; i++) {
		if (strv_contains(keys, e[i].key) || (e[i].source && strv_contains(paths, e[i].source)))
			continue;
		if (e[i].in_use) {
			printf("kept %s: a VM uses it\n", e[i].key);
			continue;
		}
		if (dry_run) {
			printf("would remove %s (%s)\n", e[i].key, e[i].source ? e[i].source : "-");
			continue;
		}
		r = image_cache_remove(cache, e[i].key);
		if (r == -EBUSY)
			printf("kept %s: a VM uses it\n", e[i].key);
		else if (r < 0) {
			fprintf(stderr, "vmd image prune: %s: %s\n", e[i].key, strerror(-r));
			ret = EXIT_RUNTIME;
		} else {
			printf("removed %s (%s)\n", e[i].key, e[i].source ? e[i].source : "-");
			removed++;
		}
	}
	image_cache_entries_free(e, n);
	if (!dry_run)
		printf("%zu removed\n", removed);
	return ret;
}

int cmd_image(int argc, char **argv, const char *config)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "ref", required_argument, NULL, 'r' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		/* The daemon's unpack helper (struct unpack_helper); not in usage(). */
		{ "cache-dir", required_argument, NULL, 'C' },
		{ "max-mib", required_argument, NULL, 'M' },
		{ "setuid", no_argument, NULL, 'S' },
		{}
	};
	struct unpack_helper helper = { .max_mib = 8192 };
	bool config_given = false, helper_opt = false;
	char *end;
	_cleanup_host_config_ struct host_config *host = NULL;
	_cleanup_free_ char *cache = NULL;
	const char *ref = NULL, *sub;
	bool dry_run = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
		switch (c) {
		case 'c':
			config = optarg;
			config_given = true;
			break;
		case 'C':
			helper.cache = optarg;
			helper_opt = true;
			break;
		case 'M':
			errno = 0;
			helper.max_mib = strtoull(optarg, &end, 10);
			if (errno || !*optarg || *end || optarg[0] < '1' || optarg[0] > '9' || helper.max_mib > 1048576) {
				fprintf(stderr, "vmd image: --max-mib %s: give a number of MiB, 1 to 1048576\n", optarg);
				return EXIT_BAD_INPUT;
			}
			helper_opt = true;
			break;
		case 'S':
			helper.setuid = true;
			helper_opt = true;
			break;
		case 'r':
			ref = optarg;
			break;
		case 'n':
			dry_run = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_BAD_INPUT;
	}
	sub = argv[optind++];
	if ((ref && !streq(sub, "unpack")) || (dry_run && !streq(sub, "prune"))) {
		fprintf(stderr, "vmd image %s: %s is not an option of this command\n", sub, ref ? "--ref" : "--dry-run");
		return EXIT_BAD_INPUT;
	}
	if (helper_opt) {
		if (!streq(sub, "unpack") || !helper.cache || config_given || optind + 1 != argc) {
			fprintf(stderr, "vmd image: --cache-dir, --max-mib and --setuid are for the daemon's "
					"unpack helper: vmd image unpack --cache-dir DIR [--max-mib N] [--setuid] "
					"[--ref REF] IMAGE\n");
			return EXIT_BAD_INPUT;
		}
		if (helper.cache[0] != '/') {
			fprintf(stderr, "vmd image unpack: --cache-dir %s: not an absolute path\n", helper.cache);
			return EXIT_BAD_INPUT;
		}
		return do_unpack(NULL, helper.cache, argv[optind], ref, &helper);
	}
	if (cli_load_host(config, &host) < 0)
		return EXIT_BAD_INPUT;
	cache = image_cache_dir(host);
	if (!cache)
		return EXIT_RUNTIME;
	if (streq(sub, "list") && optind == argc)
		return do_list(cache);
	if (streq(sub, "unpack") && optind + 1 == argc)
		return do_unpack(host, cache, argv[optind], ref, NULL);
	if (streq(sub, "remove") && optind < argc)
		return do_remove(cache, argv + optind);
	if (streq(sub, "prune") && optind == argc)
		return do_prune(host, cache, dry_run);
	usage(stderr);
	return EXIT_BAD_INPUT;
}
