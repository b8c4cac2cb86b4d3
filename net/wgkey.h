/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* WireGuard keys (Curve25519, through libsodium). Secrets are made in this
 * process: they never pass through a command line, an environment or a
 * log, and their buffers are wiped after use.
 *
 * A key directory holds them the way "wg genkey | tee privatekey | wg pubkey
 * > publickey" leaves them: base64 text with a trailing newline, the private
 * key mode 0600, the public key mode 0644. */

#include <stdbool.h>
#include <stdint.h>

#define WG_KEY_LEN 32
#define WG_KEY_B64_LEN 44 /* without the NUL */

/* A fresh private key, clamped as WireGuard expects. */
int wg_key_generate(uint8_t priv[WG_KEY_LEN]);
int wg_key_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN]);
void wg_key_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1]);
/* Accepts exactly 44 base64 characters, then optional whitespace. */
int wg_key_from_base64(const char *s, uint8_t key[WG_KEY_LEN]);

/* Makes sure dirfd holds "privatekey" and "publickey". An existing private
 * key is never replaced: it is read and its public half written if that is
 * missing or stale. A private key that cannot be parsed is an error
 * (-EBADMSG), not something to overwrite. *ret_created tells whether a new
 * key was made. */
int wg_keydir_ensure(int dirfd, bool *ret_created);
/* Reads dirfd's privatekey (the caller wipes it), or its public half. */
int wg_keydir_private(int dirfd, uint8_t priv[WG_KEY_LEN]);
int wg_keydir_public(int dirfd, uint8_t pub[WG_KEY_LEN]);
