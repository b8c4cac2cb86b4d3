/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Key directories: host directories that hand a VM its secrets (WireGuard
 * keys, SSH host keys). The one place vmd touches them; it creates and
 * fills them but never deletes or rewrites anything in them. */

#include "wgkey.h"

/* What keydir needs of one of a VM's keys (callers fill it in from the
 * definition's). */
struct keydir_key {
	const char *name;
	const char *source; /* NULL: <keys_dir>/<vm>/<name> */
	bool wireguard;     /* generate a WireGuard key in it on first use */
};

/* The host directory for key k of VM vm: k->source, or
 * <keys_dir>/<vm>/<k->name>. A missing directory is created (mode 0700,
 * owned by whoever runs vmd: root). A path that is a symlink or not a
 * directory is refused, and so is a source whose parent does not exist.
 * If the key asks for it, a secret is generated into it on first use.
 * Errors are logged with the VM's name. ret_fd, if given, gets the open
 * directory. */
int keydir_prepare(const char *keys_dir, const char *vm, const struct keydir_key *k, char **ret_path, int *ret_fd);

/* The WireGuard public key of key directory k, read from its private key.
 * Creates nothing: -ENOENT if there is no directory or key yet. */
int keydir_wg_public(const char *keys_dir, const char *vm, const struct keydir_key *k, uint8_t pub[WG_KEY_LEN]);

