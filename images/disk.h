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
 * On mkfs failure, *ret_why (if given) holds its last output line.
 * path's directory is opened as open_below(dir, root_len) does: a symlink
 * below root_len (state_dir) is -ELOOP, nothing is made through it. */
int disk_create(const char *path, size_t root_len, enum disk_kind kind, uint64_t size_mib, const char *label,
		bool *ret_created, char **ret_why);

/* Creates path as a qcow2 overlay on the read-only image base (format
 * "raw" or "qcow2"), made by qemu-img the same all-or-nothing way as
 * disk_create(). size_mib 0 takes the base's size. An existing file at path
 * is replaced. */
int disk_create_overlay(const char *path, size_t root_len, const char *base, const char *base_format,
			uint64_t size_mib, char **ret_why);

/* Removes an ephemeral image; refuses anything but a regular file. */
int disk_remove(const char *path);

/* Grows the persistent volume at path to size_mib, while no VM uses it:
 * the image, then (if it holds ext2/3/4) its file system, after an
 * e2fsck -f -p and with resize2fs keeping an undo log, so a failure or a
 * crash halfway puts every byte back (at the next call). Returns 1 if it
 * grew, 0 if it already had that size; -EFBIG if it is larger (never
 * shrunk), -EMLINK if hardlinked, -EUCLEAN if e2fsck found what it may not
 * repair alone. *ret_old_mib: its size before; *ret_fs: whether a file
 * system was grown too; *ret_why: the failing tool's last line. The image
 * is opened as disk_open() does (-ELOOP, -EBADFD, -EMLINK). */
int disk_grow(const char *path, size_t root_len, uint64_t size_mib, uint64_t *ret_old_mib, bool *ret_fs,
	      char **ret_why);

/* A volume's size in bytes, opened as disk_open() does but read-only
 * (-ELOOP, -EBADFD): -ENOENT if there is none yet. */
int disk_size(const char *path, size_t root_len, uint64_t *ret_bytes);

/* Whether the tools that make (and grow) such a disk are there: 0, or
 * -ENOENT with *ret_missing naming the first one missing. */
int disk_check_tools(bool overlay, bool persistent, const char **ret_missing);

/* Opens the image at path for the hypervisor, read-write: path's first
 * root_len bytes (state_dir) as they are, the rest with no symlink in any
 * component (open_below()). Returns the fd, or -ELOOP (a symlink on the
 * way), -EBADFD (not a regular file) or -EMLINK (more than one link: a
 * hard link could make the guest write into another file). */
int disk_open(const char *path, size_t root_len);
