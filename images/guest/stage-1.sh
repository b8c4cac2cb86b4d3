#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stage 1 of the tiny vmd guest: the initrd's /init.
#
# The first half of the guest contract: mount the host store (virtiofs tag
# "nix-store", read-only), mount what systemd.mount-extra= entries on the
# kernel command line ask for, then switch to a fresh tmpfs root and exec the
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
mounts=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	init=*) init=${arg#init=} ;;
	systemd.mount-extra=*) mounts="$mounts ${arg#systemd.mount-extra=}" ;;
	esac
done
set +f
[ -n "$init" ] || fail "no init= on the kernel command line"

mount -t tmpfs -o mode=0755 root /newroot || fail "cannot mount the root tmpfs"
mkdir -p /newroot/nix/store
mount -t virtiofs -o ro nix-store /newroot/nix/store ||
	fail "cannot mount the store (virtiofs tag nix-store)"

# Without udev there is no /dev/disk/by-id; build the links the contract
# names (virtio-<serial>) from sysfs. They live on devtmpfs and so survive
# the switch to stage 2.
mkdir -p /dev/disk/by-id
for b in /sys/block/vd*; do
	[ -r "$b/serial" ] || continue
	serial=$(cat "$b/serial")
	[ -n "$serial" ] && ln -sf "../../${b##*/}" "/dev/disk/by-id/virtio-$serial"
done

# systemd.mount-extra=WHAT:WHERE[:TYPE[:OPTIONS]]. vmd never emits escaped
# colons: it refuses paths that contain one.
set -f
for spec in $mounts; do
	what=${spec%%:*}; rest=${spec#*:}
	where=${rest%%:*}; rest=${rest#"$where"}; rest=${rest#:}
	type=${rest%%:*}; rest=${rest#"$type"}; opts=${rest#:}
	[ -n "$what" ] && [ -n "$where" ] || fail "bad systemd.mount-extra=$spec"
	mkdir -p "/newroot$where" || fail "cannot create $where"
	mount ${type:+-t "$type"} -o "${opts:-defaults}" "$what" "/newroot$where" ||
		fail "cannot mount $what at $where"
done

set +f
for fs in dev proc sys; do
	mkdir -p "/newroot/$fs"
	mount --move "/$fs" "/newroot/$fs"
done
exec switch_root /newroot "$init"
fail "cannot exec $init"
