/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What an image VM's init runs (issue 14): the image's config merged with
 * the definition's overrides, handed to the guest as one QEMU fw_cfg entry.
 *
 * The entry is text, one "KEY VALUE" per line, VALUE percent-encoded
 * (every byte outside 0x21..0x7e, '%' and ',' as %XX): no comma, space
 * or control character anywhere. The guest side is images/guest/image-init.c.
 *
 *   vmd-image 1          always first
 *   argv VALUE           repeated: Entrypoint, then Cmd
 *   env NAME=VALUE       repeated
 *   workdir VALUE
 *   uid N / gid N / groups N,N,...
 *   stop-signal N */

#include <sys/types.h>

#include "guest/image-proto.h"
#include "oci.h"

/* The entry's file in the VM's run directory (QEMU reads it: -fw_cfg file=,
 * which keeps the environment off QEMU's world-readable command line). */
#define IMAGE_CONF_FILE "image.conf"

struct image_launch {
	char **argv;
	char **env;
	char *workdir;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t n_groups;
	int stop_signal;
};

void image_launch_clear(struct image_launch *l);

/* argv = Entrypoint + (cmd, or the image's Cmd); env = the image's Env
 * with env's entries replacing the same NAME (and docker's PATH if none);
 * workdir = workdir, or the image's, or "/"; the stop signal from the
 * image's StopSignal ("SIGTERM", "TERM" or "15"; default SIGTERM). The
 * user is the caller's (image_resolve_user()). Errors "FIELD: reason". */
int image_launch_compose(const struct oci_run *run, char *const *cmd, char *const *env, const char *workdir,
			 struct image_launch *ret, struct schema_errors *e);

/* A signal name or number as OCI StopSignal gives it: 1..64, or -EINVAL. */
int image_parse_signal(const char *s);

/* The fw_cfg entry; -E2BIG over IMAGE_CONF_MAX. */
int image_conf_format(const struct image_launch *l, char **ret);
