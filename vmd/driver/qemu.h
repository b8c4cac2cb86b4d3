/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The QEMU command line, built by a pure function (tests compare it with
 * golden files), and the accelerator choice. The guest kernel command line
 * is cmdline.h's. */

#include "def.h"
#include "host.h"

struct qemu_fs {
	const char *tag;
	int fd; /* connected to its virtiofsd, as numbered in the child */
};

struct qemu_disk {
	const char *name; /* also the virtio-blk serial */
	/* The image, opened read-write by vmd, as numbered in the child:
	 * QEMU gets it as an fd set and never opens a path of vmd's. */
	int fd;
	bool ephemeral;   /* no flushes needed: the data dies with the VM */
	/* An overlay (qcow2) on a base image, which QEMU gets the same way,
	 * read-only, instead of the path in the overlay's header; else raw
	 * and base_format is NULL. */
	const char *base_format;
	int base_fd;
	bool base_blockdev; /* QEMU's "host_device", not "file" */
};

struct qemu_config {
	const char *binary; /* absolute */
	const char *name;
	int accel;          /* ACCEL_KVM or ACCEL_TCG */
	uint32_t vcpus, memory_mib;
	const char *kernel, *initrd, *cmdline;
	/* Pre-bound listening sockets, as numbered in the child. */
	int qmp_fd, console_fd, notify_fd, agent_fd;
	const struct qemu_fs *fs;
	size_t n_fs;
	const struct qemu_disk *disks;
	size_t n_disks;
	/* The network: a tap's queue fds as numbered in the child, and the
	 * guest's MAC. More than one fd makes a multiqueue NIC. */
	const char *mac;
	const int *tap_fds;
	unsigned n_taps;
	/* vhost-net (only with KVM and /dev/vhost-net): an opened
	 * /dev/vhost-net per tap queue, as numbered in the child; NULL: off. */
	const int *vhost_fds;
	/* One fw_cfg entry for the guest (an image VM's, guestconf.h), read
	 * from a file (not string=: QEMU's command line is world-readable,
	 * and the entry holds the environment); NULL: none. */
	const char *fw_cfg_name, *fw_cfg_file;
};

int qemu_argv(const struct qemu_config *c, char ***ret);

/* Resolves ACCEL_AUTO. KVM is chosen only where it really works: not on
 * PVM hosts (kvm_pvm, which crashes stock kernels), not without a usable
 * /dev/kvm, and only for kvm_intel/kvm_amd. root is "/" except in tests,
 * which also skip the KVM_GET_API_VERSION ioctl. */
int accel_resolve(int requested, const char *root, int *ret, const char **reason);
