/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* virtiofsd command lines. Two implementations are in use: the C daemon
 * that ships with QEMU up to 7.2 (Debian 12: /usr/lib/qemu/virtiofsd,
 * "-o source=DIR" options) and the Rust daemon ("--shared-dir DIR"). vmd
 * probes which one a binary is, and what it supports, from its --help. */

#include "util.h"

enum virtiofsd_style { VIRTIOFSD_STYLE_AUTO, VIRTIOFSD_STYLE_QEMU, VIRTIOFSD_STYLE_RUST };

enum virtiofsd_cache { VIRTIOFSD_CACHE_ALWAYS, VIRTIOFSD_CACHE_AUTO, VIRTIOFSD_CACHE_NONE };

/* virtiofsd holds an fd per inode it has seen: the RLIMIT_NOFILE it gets. */
#define VIRTIOFSD_NOFILE 1048576

struct virtiofsd_caps {
	enum virtiofsd_style style;
	bool readonly;           /* Rust: --readonly */
	bool inode_file_handles; /* Rust: --inode-file-handles */
	bool modcaps;            /* Rust: --modcaps (the C one always has -o modcaps) */
};

struct virtiofsd_config {
	const char *binary; /* absolute path */
	const char *source;
	int fd;             /* the pre-bound listening socket, as numbered in the child */
	enum virtiofsd_cache cache;
	bool read_only;
	/* Every file below source is readable by anyone (the store): its
	 * sandboxed process needs no DAC override either. */
	bool world_readable;
};

/* The capabilities virtiofsd keeps by default (both daemons: chown,
 * dac_override, fowner, fsetid, setgid, setuid, mknod, setfcap) serve a
 * guest that writes as any owner. A read-only share needs only to read
 * (dac_override, and fowner for O_NOATIME opens, which a guest's overlayfs
 * makes): its sandboxed process drops the rest, and a world-readable one
 * (the store) even those. The modcaps list for that, or NULL to keep
 * them (a writable share). */
const char *virtiofsd_modcaps(bool read_only, bool world_readable);

/* Pure: builds the argv. */
int virtiofsd_argv(const struct virtiofsd_config *c, const struct virtiofsd_caps *caps, char ***ret);

/* Fills caps from the output of "virtiofsd --help". */
int virtiofsd_parse_help(const char *help, enum virtiofsd_style forced, struct virtiofsd_caps *ret);
/* Runs binary --help (sandboxed) and parses it. */
int virtiofsd_probe(const char *binary, enum virtiofsd_style forced, struct virtiofsd_caps *ret);
