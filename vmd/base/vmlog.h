/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The per-VM log file: console, QEMU and virtiofsd output in one file.
 * QEMU and virtiofsd write to it directly (O_APPEND), so it survives a vmd
 * restart; vmd keeps it bounded by copying it to NAME.log.1 and truncating
 * it once it grows past the limit (writers with O_APPEND carry on at the new
 * end). At most about twice the limit is ever on disk. */

#include "util.h"

struct vmlog {
	int fd;
	char *path;
	uint64_t max;
};

int vmlog_open(struct vmlog *l, const char *path, uint64_t max);
void vmlog_close(struct vmlog *l);
/* Appends (and rotates first if needed). */
int vmlog_write(struct vmlog *l, const void *buf, size_t n);
_printf_(2, 3) void vmlog_printf(struct vmlog *l, const char *fmt, ...);
/* Rotates if the file is over the limit. */
int vmlog_check(struct vmlog *l);
/* The current size of the log, to mark where a boot's output begins. */
uint64_t vmlog_offset(struct vmlog *l);
/* The last n lines of the log written at or after offset, for error
 * messages about one boot. */
char *vmlog_tail(const char *path, unsigned n, uint64_t offset);
