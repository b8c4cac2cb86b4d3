/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Disk images: ephemeral disks (fresh every boot, ext4 without a journal,
 * deleted when the VM stops) and persistent volumes (created once, with a
 * journal, never deleted by vmd). Both are sparse raw files formatted on
 * the host. */

#include "util.h"

enum disk_kind { DISK_EPHEMERAL, DISK_PERSISTENT };

/* Creates path. The image is built as an unnamed O_TMPFILE in the same
 * directory and linked into place only once mkfs succeeded, so a failure
 * (a full disk, a killed vmd) never leaves a partial image behind.
 * DISK_EPHEMERAL replaces an existing file; DISK_PERSISTENT keeps an
 * existing one untouched (*ret_created tells which happened).
 * On mkfs failure, *ret_why (if given) holds its last output line. */
int disk_create(const char *path, enum disk_kind kind, uint64_t size_mib, const char *label,
		bool *ret_created, char **ret_why);

/* Removes an ephemeral image; refuses anything but a regular file. */
int disk_remove(const char *path);
