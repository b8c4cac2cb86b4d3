/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the subcommands share: exit codes, loading settings, printing
 * validation errors. */

#include "def.h"
#include "host.h"

enum {
	EXIT_OK = 0,
	EXIT_BAD_INPUT = 1, /* usage, invalid definition or settings */
	EXIT_RUNTIME = 2,   /* anything that went wrong while doing the work */
	EXIT_TIMEOUT = 124, /* a guest command ran out of --timeout (like timeout(1)) */
	EXIT_NOT_FOUND = 127, /* a guest command could not be run (like a shell) */
};

/* Loads host settings (path NULL: the default, which may be missing) and
 * prints "FILE: FIELD: reason" lines on failure. */
int cli_load_host(const char *path, struct host_config **ret);
void cli_print_errors(const char *file, const struct schema_errors *errors);

int cmd_check(int argc, char **argv, const char *config);
/* The definition and settings schema as JSON (nix/schema.json). */
int cmd_schema(int argc, char **argv);
int cmd_image(int argc, char **argv, const char *config);
int cmd_run(int argc, char **argv, const char *config);
int cmd_daemon(int argc, char **argv, const char *config);
/* What libvirt runs as virtiofsd for the libvirt driver (not for users). */
int cmd_virtiofsd_exec(int argc, char **argv);
/* The control commands: status, start, stop, restart, reload, exec, logs. */
int cmd_ctl(int argc, char **argv, const char *config);
