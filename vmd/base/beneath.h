/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Opening what vmd hands to a child: no symlink followed in any
 * component, nothing resolved outside the directory it is meant to be in.
 * A path that was checked once and passed on as a string can be swapped
 * for a symlink before the child opens it; an fd opened this way cannot. */

#include "util.h"

/* Opens path below dirfd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
 * | RESOLVE_NO_MAGICLINKS), or, where the kernel lacks openat2, a walk of
 * O_NOFOLLOW opens that refuses "..". flags as for open(); O_CLOEXEC is
 * always added; O_CREAT is refused (-EINVAL). "" and "." are dirfd itself.
 * Returns the fd or -errno: -ELOOP for a symlink anywhere, -EXDEV for an
 * absolute path or a ".." that would leave dirfd (the walk: any ".."). */
int open_beneath(int dirfd, const char *path, int flags);
/* The walk alone, for tests. */
int open_beneath_walk(int dirfd, const char *path, int flags);

/* path's first root_len bytes (0: "/") are the host's own setting
 * (state_dir, keys_dir, the parent directory a definition names): opened
 * as they are, symlinks followed. The rest is opened below them with
 * open_beneath(). */
int open_below(const char *path, size_t root_len, int flags);

/* open_beneath(dirfd, path) (nothing blocking: O_NONBLOCK) and
 * read_fd_regular() (util.h). */
int read_beneath(int dirfd, const char *path, size_t max, char **ret, size_t *ret_size);
