/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Base64 (RFC 4648): the guest agent's output, exec results on the
 * control socket, the state a libvirt domain carries in its metadata. */

#include <stddef.h>

/* Decoding skips '=' and line breaks; any other character outside the
 * alphabet is -EINVAL. *ret is NUL-terminated. */
int base64_decode(const char *in, size_t len, char **ret, size_t *ret_len);
/* NULL when out of memory. */
char *base64_encode(const void *in, size_t len);
