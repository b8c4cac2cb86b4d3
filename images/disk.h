/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Disk images: ephemeral disks (fresh every boot, ext4 without a journal,
 * deleted when the VM stops) and persistent volumes (created once, with a
 * journal, never deleted by vmd). Both are sparse raw files formatted on
 * the host. Overlays put a qcow2 file per boot over a read-only base image. */

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

/* Creates path as a qcow2 overlay on the read-only image base (format
 * "raw" or "qcow2"), made by qemu-img the same all-or-nothing way as
 * disk_create(). size_mib 0 takes the base's size. An existing file at path
 * is replaced. */
int disk_create_overlay(const char *path, const char *base, const char *base_format, uint64_t size_mib,
			char **ret_why);

/* Removes an ephemeral image; refuses anything but a regular file. */
int disk_remove(const char *path);

/* Opens the image at path for the hypervisor, read-write: path's first
 * root_len bytes (state_dir) as they are, the rest with no symlink in any
 * component (open_below()). Returns the fd, or -ELOOP (a symlink on the
 * way), -EBADFD (not a regular file) or -EMLINK (more than one link: a
 * hard link could make the guest write into another file). */
int disk_open(const char *path, size_t root_len);
