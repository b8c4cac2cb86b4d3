/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The guest kernel command line, built by a pure function: at boot for
 * QEMU or libvirt, and at load time to check a definition against the
 * limit. Tests compare it with a golden file. */

#define KERNEL_CMDLINE_MAX 2048

struct vm_def;

/* The guest kernel command line: console, panic, hostname, the guest's
 * address on its bridge as the kernel's ip= (ip=ADDR:::NETMASK:::off), the
 * systemd.mount-extra= entries for keys, shares and disks (parents before
 * children), init=<system>/init, the closure's kernel-params, then the definition's
 * kernel_params. Returns -E2BIG beyond KERNEL_CMDLINE_MAX. ret may be NULL
 * (only the length is checked). */
int kernel_cmdline(const struct vm_def *d, const char *system, const char *closure_params, char **ret);
