/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdio.h>

#include "cli.h"
#include "log.h"

#ifndef VMD_VERSION
#define VMD_VERSION "0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"vmd %s: declarative microVMs for Nix-built system closures and container images\n\n"
		"Usage: vmd [-c SETTINGS] COMMAND [ARGS]\n\n"
		"  vmd check PATH...            validate definitions (files or directories)\n"
		"  vmd run DEF [-- CMD ARG...]  throwaway VM in the foreground; Ctrl-C shuts it down\n"
		"  vmd daemon                   supervise all definitions; reload on SIGHUP\n"
		"  vmd status [NAME] [--json]   state, pid, uptime, restarts, ready, boot time\n"
		"  vmd start|stop|restart NAME\n"
		"  vmd reload                   re-read definitions and apply the difference\n"
		"  vmd exec NAME -- CMD ARG...  run a command in a running guest\n"
		"  vmd logs NAME [-f]           console + QEMU + virtiofsd log of one VM\n"
		"  vmd console NAME             the VM's serial console (Ctrl-] detaches)\n"
		"  vmd shutdown                 power every VM off, then stop the daemon\n"
		"  vmd image list|unpack|remove|prune  the cache of unpacked container images\n"
		"  vmd schema                   the definition and settings schema as JSON\n"
		"  vmd virtiofsd-exec ...       internal: what libvirt runs as virtiofsd (libvirt driver)\n\n"
		"Every command takes -c FILE for the host settings (default %s)\n"
		"and --help. Exit status: 0 success, 1 bad input, 2 runtime failure;\n"
		"run with a command exits with the command's status.\n",
		VMD_VERSION, HOST_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
	const char *config = NULL;
	int i = 1;

	/* A closed stdout (vmd run ... | head) is an error to handle, not a
	 * reason to die with a VM half torn down. Children get SIG_DFL back. */
	signal(SIGPIPE, SIG_IGN);

	/* Global options before the command: -c FILE, -h, --version. */
	while (i < argc && argv[i][0] == '-') {
		if ((streq(argv[i], "-c") || streq(argv[i], "--config")) && i + 1 < argc) {
			config = argv[i + 1];
			i += 2;
		} else if (startswith(argv[i], "--config=")) {
			config = argv[i] + strlen("--config=");
			i++;
		} else if (streq(argv[i], "-h") || streq(argv[i], "--help")) {
			usage(stdout);
			return EXIT_OK;
		} else if (streq(argv[i], "--version")) {
			printf("vmd %s\n", VMD_VERSION);
			return EXIT_OK;
		} else {
			fprintf(stderr, "vmd: unknown option %s\n\n", argv[i]);
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	}
	if (i >= argc) {
		usage(stdout);
		return EXIT_OK;
	}
	if (streq(argv[i], "check"))
		return cmd_check(argc - i, argv + i, config);
	if (streq(argv[i], "run"))
		return cmd_run(argc - i, argv + i, config);
	if (streq(argv[i], "daemon"))
		return cmd_daemon(argc - i, argv + i, config);
	if (streq(argv[i], "image"))
		return cmd_image(argc - i, argv + i, config);
	if (streq(argv[i], "schema"))
		return cmd_schema(argc - i, argv + i);
	if (streq(argv[i], "virtiofsd-exec"))
		return cmd_virtiofsd_exec(argc - i, argv + i);
	{
		static const char *const ctl[] = { "status", "start", "stop", "restart", "reload", "exec", "logs", "console", "shutdown" };

		for (size_t k = 0; k < ELEMENTSOF(ctl); k++)
			if (streq(argv[i], ctl[k]))
				return cmd_ctl(argc - i, argv + i, config);
	}
	if (streq(argv[i], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	fprintf(stderr, "vmd: unknown command \"%s\"\n\n", argv[i]);
	usage(stderr);
	return EXIT_BAD_INPUT;
}
