/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* "vmd virtiofsd-exec": what libvirt runs as virtiofsd for a VM of the
 * libvirt driver (its <binary path=...> is a small script that calls
 * this). It gives that virtiofsd what vmd's own spawn() gives it with the
 * QEMU driver, then becomes it: the source made read-only in a private
 * mount namespace (libvirt 9 refuses <readonly/> for virtiofs), for a
 * read-only share the capabilities for writing dropped (the C virtiofsd's
 * -o modcaps, as vmd's own command line has it), vmd's seccomp filter, a high RLIMIT_NOFILE, and its pid in a file vmd watches,
 * so a dead virtiofsd stops the VM instead of hanging its guest. */
#include <stdio.h>

#include "cli.h"
#include "log.h"
#include "spawn.h"
#include "virtiofsd.h"


/* The shared directory in libvirt's arguments: "-o source=DIR,..." (the C
 * virtiofsd, *c_style set) or "--shared-dir=DIR" (the Rust one). */
static const char *find_source(char **args, char **ret_buf, bool *c_style)
{
	for (size_t i = 0; args[i]; i++) {
		const char *o = NULL;

		if (streq(args[i], "-o") && args[i + 1])
			o = args[i + 1];
		else if (startswith(args[i], "-o"))
			o = args[i] + 2;
		else if (startswith(args[i], "--shared-dir="))
			return args[i] + strlen("--shared-dir=");
		else if (streq(args[i], "--shared-dir") && args[i + 1])
			return args[i + 1];
		if (!o)
			continue;
		for (const char *p = o; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
			if (startswith(p, "source=")) {
				const char *end = strchr(p, ',');

				*ret_buf = end ? strndup(p + 7, (size_t)(end - p - 7)) : strdup(p + 7);
				*c_style = true;
				return *ret_buf;
			}
	}
	return NULL;
}

static int write_pid(const char *path)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	return write_file(path, buf, 0644, 0);
}

int cmd_virtiofsd_exec(int argc, char **argv)
{
	_cleanup_free_ char *source_buf = NULL, *modcaps = NULL;
	_cleanup_strv_free_ char **args = NULL;
	const char *pidfile = NULL, *source;
	bool read_only = false, handles = false, world_readable = false, c_style = false;
	int i = 1, r;

	for (; i < argc && startswith(argv[i], "--"); i++) {
		if (streq(argv[i], "--")) {
			i++;
			break;
		}
		if (streq(argv[i], "--read-only"))
			read_only = true;
		else if (streq(argv[i], "--file-handles"))
			handles = true;
		else if (streq(argv[i], "--world-readable"))
			world_readable = true;
		else if (startswith(argv[i], "--pidfile="))
			pidfile = argv[i] + strlen("--pidfile=");
		else {
			log_error("virtiofsd-exec: unknown option %s", argv[i]);
			return EXIT_BAD_INPUT;
		}
	}
	if (i >= argc || argv[i][0] != '/') {
		log_error("usage: vmd virtiofsd-exec [--read-only] [--world-readable] [--file-handles] "
			  "[--pidfile=FILE] -- /PATH/TO/VIRTIOFSD ARG...");
		return EXIT_BAD_INPUT;
	}
	source = find_source(argv + i + 1, &source_buf, &c_style);
	if (read_only && (!source || source[0] != '/')) {
		log_error("virtiofsd-exec: --read-only, but no absolute source directory in the arguments");
		return EXIT_BAD_INPUT;
	}
	if (pidfile) {
		r = write_pid(pidfile);
		if (r < 0) {
			log_error_errno(r, "virtiofsd-exec: writing %s: %m", pidfile);
			return EXIT_RUNTIME;
		}
	}
	/* Only the C daemon surely takes -o modcaps; a Rust one (maybe on
	 * another host) is left as libvirt starts it. */
	args = strv_copy(argv + i);
	if (args && c_style && virtiofsd_modcaps(read_only, world_readable)) {
		modcaps = xasprintf("modcaps=%s", virtiofsd_modcaps(read_only, world_readable));
		if (!modcaps || strv_extend(&args, "-o") < 0 || strv_extend(&args, modcaps) < 0) {
			strv_free(args);
			args = NULL;
		}
	}
	if (!args) {
		log_error_errno(-ENOMEM, "virtiofsd-exec: %m");
		return EXIT_RUNTIME;
	}
	struct spawn_opts o = {
		.argv = args,
		.profile = handles ? SANDBOX_VIRTIOFSD_FH : SANDBOX_VIRTIOFSD,
		.nofile = VIRTIOFSD_NOFILE,
		.readonly_path = read_only ? source : NULL,
	};
	spawn_exec(&o);
	if (pidfile)
		(void)unlink(pidfile);
	return EXIT_RUNTIME;
}
