#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stage 1 of the tiny vmd guest: the initrd's /init.
#
# The first half of the guest contract: mount the host store (virtiofs tag
# "nix-store", read-only), mount what systemd.mount-extra= entries on the
# kernel command line ask for (vmd-mounts.sh), then switch to a fresh tmpfs root and exec the
# closure's init=. Any failure powers the guest off with a message on the
# console, so the host sees an exit instead of a guest hung in a shell.
export PATH=/bin

fail() {
	echo "vmd-guest: stage 1: $*" >/dev/console
	poweroff -f
	exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# ext4 needs crc32c for metadata checksums; load it up front rather than
# through the kernel's request_module().
modprobe -a virtio_pci virtio_console virtio_blk virtiofs crc32c_generic ext4 ||
	fail "cannot load the stage 1 modules"

set -f
init=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	init=*) init=${arg#init=} ;;
	esac
done
set +f
[ -n "$init" ] || fail "no init= on the kernel command line"

mount -t tmpfs -o mode=0755 root /newroot || fail "cannot mount the root tmpfs"
mkdir -p /newroot/nix/store
mount -t virtiofs -o ro nix-store /newroot/nix/store ||
	fail "cannot mount the store (virtiofs tag nix-store)"

# Key directories, shares and disks, with the script NixOS guests run too.
/bin/sh /vmd-mounts.sh /newroot || fail "cannot mount what systemd.mount-extra= asks for"

set +f
for fs in dev proc sys; do
	mkdir -p "/newroot/$fs"
	mount --move "/$fs" "/newroot/$fs"
done
exec switch_root /newroot "$init"
fail "cannot exec $init"
