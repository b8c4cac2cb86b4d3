/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Nix garbage-collector roots for the closures vmd boots.
 *
 * Each root is indirect, as `nix-store --add-root --indirect` makes it: a
 * symlink LINK -> closure that vmd owns (in the VM's run directory while it
 * runs, in <state_dir>/gcroots/ while it is defined), and a symlink
 * <gcroots_dir>/vmd-HASH -> LINK that tells Nix's collector to follow LINK.
 * HASH is derived from LINK, so every LINK has one registration and the
 * same LINK always finds its own again. Removing LINK alone already frees
 * the closure (Nix drops a registration whose LINK is gone); vmd removes
 * both. A host without Nix (no <gcroots_dir>) gets no roots: -ENOENT. */

#include <stddef.h>

/* Points LINK at TARGET (replacing what LINK was, atomically) and
 * registers it in GCROOTS_DIR. */
int gcroot_add(const char *gcroots_dir, const char *link, const char *target);
/* Removes LINK and its registration; what is already gone is fine. */
int gcroot_remove(const char *gcroots_dir, const char *link);
/* Makes DIR hold exactly the roots NAMES[i] -> TARGETS[i] (names are
 * validated VM names) and removes every other root in it. */
int gcroot_sync_dir(const char *gcroots_dir, const char *dir, char *const *names, char *const *targets,
		    size_t n);
