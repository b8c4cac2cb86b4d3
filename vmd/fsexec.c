/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* "vmd virtiofsd-exec": what libvirt runs as virtiofsd for a VM of the
 * libvirt driver (its <binary path=...> is a small script that calls
 * this). It gives that virtiofsd what vmd's own spawn() gives it with the
 * QEMU driver, then becomes it: the source made read-only in a private
 * mount namespace (libvirt 9 refuses <readonly/> for virtiofs), for a
 * read-only share the capabilities for writing dropped (the C virtiofsd's
 * -o modcaps, as vmd's own command line has it), vmd's
 * seccomp filter, a high RLIMIT_NOFILE, and its pid in a file vmd watches,
 * so a dead virtiofsd stops the VM instead of hanging its guest. */
#include <stdio.h>

#include "beneath.h"
#include "cli.h"
#include "log.h"
#include "spawn.h"
#include "virtiofsd.h"


/* The shared directory in libvirt's arguments: "-o source=DIR,..." (the C
 * virtiofsd) or "--shared-dir=DIR" / "--shared-dir DIR" (the Rust one).
 * Returns DIR, and puts `at` in its place: the argument is rewritten into
 * *ret_arg, which args then points to. (libvirt doubles commas in DIR;
 * vmd's paths have none.) */
static char *take_source(char **args, const char *at, char **ret_arg)
{
	for (size_t i = 0; args[i]; i++) {
		char **arg = NULL;
		const char *o = NULL, *prefix = "";

		if (startswith(args[i], "--shared-dir=")) {
			*ret_arg = xasprintf("--shared-dir=%s", at);
			if (!*ret_arg)
				return NULL;
			o = args[i] + strlen("--shared-dir=");
			args[i] = *ret_arg;
			return strdup(o);
		}
		if (streq(args[i], "--shared-dir") && args[i + 1]) {
			*ret_arg = strdup(at);
			if (!*ret_arg)
				return NULL;
			o = args[i + 1];
			args[i + 1] = *ret_arg;
			return strdup(o);
		}
		if (streq(args[i], "-o") && args[i + 1]) {
			arg = &args[i + 1];
			o = args[i + 1];
		} else if (startswith(args[i], "-o")) {
			arg = &args[i];
			o = args[i] + 2;
			prefix = "-o";
		}
		for (const char *p = o; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
			const char *end;
			char *dir;

			if (!startswith(p, "source="))
				continue;
			end = strchrnul(p, ',');
			dir = strndup(p + 7, (size_t)(end - p - 7));
			*ret_arg = xasprintf("%s%.*ssource=%s%s", prefix, (int)(p - o), o, at, end);
			if (!dir || !*ret_arg) {
				free(dir);
				return NULL;
			}
			*arg = *ret_arg;
			return dir;
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
	_cleanup_free_ char *source = NULL, *arg = NULL, *modcaps = NULL;
	_cleanup_strv_free_ char **args = NULL;
	_cleanup_close_ int dirfd = -EBADF;
	const char *pidfile = NULL, *below = NULL, *at = NULL;
	bool read_only = false, handles = false, world_readable = false;
	size_t root_len;
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
		else if (startswith(argv[i], "--below="))
			below = argv[i] + strlen("--below=");
		else if (startswith(argv[i], "--at="))
			at = argv[i] + strlen("--at=");
		else {
			log_error("virtiofsd-exec: unknown option %s", argv[i]);
			return EXIT_BAD_INPUT;
		}
	}
	if (i >= argc || argv[i][0] != '/' || !below || below[0] != '/' || !at || at[0] != '/') {
		log_error("usage: vmd virtiofsd-exec --below=DIR --at=DIR [--read-only] [--world-readable] "
			  "[--file-handles] [--pidfile=FILE] -- /PATH/TO/VIRTIOFSD ARG...");
		return EXIT_BAD_INPUT;
	}
	/* The directory is opened here, as virtiofsd starts, below the
	 * directory vmd named and with no symlink followed; virtiofsd finds
	 * it mounted at `at` (spawn_exec()). */
	source = take_source(argv + i + 1, at, &arg);
	root_len = streq(below, "/") ? 0 : strlen(below);
	if (!source || source[0] != '/' || !startswith(source, below) ||
	    (source[root_len] != '/' && source[root_len] != 0)) {
		log_error("virtiofsd-exec: no source directory below %s in the arguments", below);
		return EXIT_BAD_INPUT;
	}
	dirfd = open_below(source, root_len, O_RDONLY | O_DIRECTORY);
	if (dirfd == -ELOOP) {
		log_error_errno(dirfd, "virtiofsd-exec: %s: a symlink on the way below %s (refused)", source, below);
		return EXIT_RUNTIME;
	}
	if (dirfd < 0) {
		log_error_errno(dirfd, "virtiofsd-exec: opening %s: %m", source);
		return EXIT_RUNTIME;
	}
	if (pidfile) {
		r = write_pid(pidfile);
		if (r < 0) {
			log_error_errno(r, "virtiofsd-exec: writing %s: %m", pidfile);
			return EXIT_RUNTIME;
		}
	}
	/* Only the C daemon ("-o source=") surely takes -o modcaps; a Rust
	 * one (maybe on another host) is left as libvirt starts it. */
	args = strv_copy(argv + i);
	if (args && strstr(arg, "source=") && virtiofsd_modcaps(read_only, world_readable)) {
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
	struct spawn_dir dir = { dirfd, at, read_only };
	struct spawn_opts o = {
		.argv = args,
		.profile = handles ? SANDBOX_VIRTIOFSD_FH : SANDBOX_VIRTIOFSD,
		.nofile = VIRTIOFSD_NOFILE,
		.dir = &dir,
	};
	spawn_exec(&o);
	if (pidfile)
		(void)unlink(pidfile);
	return EXIT_RUNTIME;
}
