/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Applying container image layers (tar, tar+gzip, tar+zstd) into one tree,
 * with libarchive's secure extraction and vmd's own checks on top: layers
 * are outside input. What is refused (the whole unpack fails, the caller
 * removes the partial tree):
 *   - ".." components and absolute paths (after a leading "./"), names
 *     longer than PATH_MAX, paths of more than UNPACK_MAX_DEPTH components;
 *   - any write through a symlink, including symlinks of earlier layers and
 *     of the same layer, and whiteouts below one;
 *   - hardlinks whose target is outside, is (or is below) a symlink, or is
 *     not a regular file extracted before;
 *   - char and block device nodes, and entry types other than files,
 *     directories, symlinks, hardlinks and FIFOs;
 *   - an entry, or the running total of declared sizes (sparse files count
 *     whole), over max_bytes; more than max_entries entries;
 *   - a layer whose bytes do not hash to its digest.
 * setuid/setgid bits are stripped unless allow_setuid. Owners (numeric),
 * modes and mtimes are kept; xattrs, ACLs and file flags are not. Whiteouts
 * follow the OCI image spec (layer.md): ".wh.NAME" removes NAME of the
 * layers below, ".wh..wh..opq" in D empties D of what the layers below put
 * there; an entry that is not a directory, at the name of a directory
 * (of a lower layer or its own), replaces it whole, as docker does; each
 * layer is read twice, its whiteouts applied in the first
 * pass and its other entries written in the second, so entries of the
 * same layer stay whatever their order in the tar. */

#include "schema.h"

#define UNPACK_MAX_ENTRIES 1000000
#define UNPACK_MAX_DEPTH 256 /* path components */
#define UNPACK_DEFAULT_MAX_BYTES (8192ULL << 20)

struct unpack_opts {
	bool allow_setuid;
	uint64_t max_bytes;   /* 0: UNPACK_DEFAULT_MAX_BYTES */
	uint64_t max_entries; /* 0: UNPACK_MAX_ENTRIES */
};

struct unpack_layer {
	int fd;             /* the layer's bytes, read with pread() from offset 0 */
	const char *digest; /* "sha256:<hex>" its bytes must hash to; NULL: checked already */
	const char *label;  /* for errors: its digest or diff_id */
};

/* Applies layers, in order, into the directory rootfd. The work is done
 * in a child process chrooted into rootfd (when vmd is root, which must
 * succeed), so a gap in the checks above still cannot reach outside it;
 * it keeps no fd of its parent's but stdio, rootfd, its result pipe and
 * the layers', and blocks no signal (a ^C to vmd run reaches it; it dies
 * with its parent too). *ret_bytes: the sum of
 * the entries' declared sizes. Errors: "layer N (LABEL): PATH: reason",
 * N counted from 1. Returns 0 or -errno (-EBADMSG: a refused layer). */
int unpack_layers(int rootfd, const struct unpack_layer *layers, size_t n, const struct unpack_opts *opts,
		  uint64_t *ret_bytes, struct schema_errors *e);
