/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Preparing one boot of a VM (struct vm_plan, driver.h): everything that
 * starts no process. The run directory is locked (an flock on the
 * directory itself, which QEMU inherits: the VM counts as running while
 * either vmd or its QEMU lives, so a second vmd never takes it over), the
 * closure is checked and made a GC root, the kernel command line built,
 * ephemeral disks created, persistent volumes found or created, and key
 * directories prepared. Persistent volumes and key directories are never
 * removed; everything else of a boot is, by plan_clear(). */

#include "driver.h"

/* Paths of a VM's files, derived from the validated name only. */
char *vm_run_dir(const struct host_config *host, const char *name);
char *vm_disk_dir(const struct host_config *host, const char *name);
char *vm_volume_dir(const struct host_config *host, const char *name);

/* For the whole life of a VM: paths made, nothing touched. */
int plan_init(struct vm_plan *p, struct loop *l, const struct host_config *host, const struct vm_options *opts,
	      const struct vm_def *def, struct vmlog *log);
void plan_done(struct vm_plan *p);

/* Locks the run directory (waiting up to opts->lock_wait); sweep: empty
 * it too (leftovers of a vmd that died). -EBUSY if another holds it. */
int plan_lock(struct vm_plan *p, bool sweep);
/* Everything in the ephemeral disk directory belongs to a boot that is
 * over (the lock is held). */
int plan_sweep_disks(struct vm_plan *p);
/* The closure check, its GC root, the command line, disks and shares.
 * Errors are logged. */
int plan_prepare(struct vm_plan *p);
/* Whether a boot of def could start, checked while another boot of the
 * same VM may still run (before a restart or a changed definition stops
 * it): the closure, the kernel command line, overlay disks' bases, key
 * directories (prepared: that is idempotent) and share sources. Takes no
 * lock and leaves the run directory, the disks and the GC root alone.
 * Fills errors with "FIELD: reason" lines. */
int plan_check(const struct host_config *host, const struct vm_def *def, struct schema_errors *errors);
/* A definition's image (def->image): readable, its digests right, its
 * config runnable; if it is unpacked already, its user exists in it. No
 * unpacking. Fills errors with "FIELD: reason" lines. */
int plan_check_image(const struct host_config *host, const struct vm_def *def, struct schema_errors *errors);
/* For a daemon, which must not wait: takes the image's cache entry for
 * this boot if it is complete and the cache is not busy, else -EAGAIN;
 * then the helper (plan_unpack_argv()) unpacks it, or waits for the cache,
 * and this is asked again. Other errors are logged. */
int plan_take_image(struct vm_plan *p);
/* The unpack helper's command line: this very binary (/proc/self/exe)
 * running "vmd image unpack" with the settings that matter given on the
 * command line. Fills the cache (waiting for it if busy), then says
 * "unpacked KEY" or "cached KEY" on stdout; on failure, why, on stderr,
 * and a non-zero status. */
int plan_unpack_argv(const struct vm_plan *p, char ***ret);
/* <state_dir>/images, the unpacked images' cache. */
char *image_cache_dir(const struct host_config *host);
/* The pure part: where each disk's image and each share's source is, as
 * the definition and the settings say; nothing is looked at. */
int plan_layout(struct vm_plan *p);
/* What an adoption knows without creating disks: the layout, with key
 * directories prepared again (and WireGuard peers joined again). */
int plan_adopt(struct vm_plan *p);
/* Removes what this boot made (ephemeral disks, the run directory, if
 * the lock is held) and frees it; share processes must be gone. */
void plan_clear(struct vm_plan *p);
/* Frees the layout only, leaving every file (a VM left running). */
void plan_forget(struct vm_plan *p);

/* For a VM no one runs: if its run directory is not locked by a live
 * QEMU or vmd, removes it and the VM's ephemeral disks. -EBUSY if live. */
int plan_sweep_stale(const struct host_config *host, const char *name);
