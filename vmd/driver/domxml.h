/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The libvirt domain XML for a VM: a pure function of what vmd prepared,
 * tested against golden files like the QEMU argv. The domain mirrors what
 * the QEMU driver starts: direct kernel boot from the closure, memfd shared
 * memory, a virtiofs filesystem per share (the store first), virtio-blk
 * disks with serial = name, the tap on its bridge, the io.vmd.notify and
 * guest-agent channels, the serial console on a pty (vmd reads it through
 * libvirt into the VM's log), and every exit ending the domain (vmd's
 * restart policy decides what next). A metadata element marks it as
 * vmd's. */

#include <stdbool.h>
#include <stdint.h>

#include "virtiofsd.h"

/* The namespace of vmd's metadata element in a domain's XML. */
#define DOMXML_NS "urn:x-vmd:domain:1"
#define DOMXML_NS_PREFIX "vmd"

struct domxml_fs {
	const char *tag;
	const char *source;
	const char *binary; /* <binary path=...>: virtiofsd, or vmd's wrapper */
	enum virtiofsd_cache cache;
};

struct domxml_disk {
	const char *name; /* serial */
	const char *path;
	bool qcow2;
	bool ephemeral; /* no cache flushes: the image dies with the boot */
};

struct domxml_config {
	const char *name; /* the domain's name */
	bool kvm;
	unsigned vcpus;
	uint64_t memory_mib;
	const char *kernel, *initrd, *cmdline;
	const struct domxml_fs *fs;
	size_t n_fs;
	const struct domxml_disk *disks;
	size_t n_disks;
	/* The NIC: a tap named tap on bridge; bridge NULL: none. */
	const char *bridge, *mac, *tap;
	unsigned queues;
	/* Text of the metadata element (base64: nothing to escape). */
	const char *metadata;
};

int domxml_build(const struct domxml_config *c, char **ret);

/* The text inside vmd's metadata element as virDomainGetMetadata() returns
 * it ("<vmd:vm xmlns:vmd=...>TEXT</vmd:vm>"), or -EBADMSG. */
int domxml_metadata_text(const char *element, char **ret);
