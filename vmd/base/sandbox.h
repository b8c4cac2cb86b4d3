/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The seccomp filters that spawn() applies to every child.
 *
 * Each filter is a blocklist on top of whatever the child does itself
 * (QEMU's -sandbox on, virtiofsd's own seccomp): syscalls that none of our
 * children need and that would turn a compromised child into a host
 * compromise (kexec, modules, reboot, ptrace, bpf, keyrings, ...) return
 * EPERM. Syscalls of other architectures (x32, i386) kill the process, so
 * the filter cannot be sidestepped through a second ABI. The BPF program is
 * built once per profile with libseccomp in the parent; the child only
 * installs it, which is async-signal-safe. */

#include <linux/filter.h>

#include "util.h"

enum sandbox_profile {
	SANDBOX_QEMU,           /* no mount, namespace or chroot calls */
	SANDBOX_VIRTIOFSD,      /* may build its own mount/pid/net namespace sandbox */
	SANDBOX_VIRTIOFSD_FH,   /* as above, plus file handles (--inode-file-handles) */
	SANDBOX_TOOL,           /* mkfs and probes: like QEMU */
	SANDBOX_UNPACK,         /* vmd's image unpacker: like a tool, but may chroot (into the tree it fills) */
	_SANDBOX_MAX,
};

/* Returns a filter owned by the module (built on first use). */
int sandbox_filter(enum sandbox_profile profile, const struct sock_fprog **ret);

/* The syscalls a profile refuses, by name (for tests and --help). */
const char *const *sandbox_blocked(enum sandbox_profile profile, size_t *n);
