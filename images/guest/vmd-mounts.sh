#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vmd-mounts ROOT: the guest contract's stage-1 mounts, shared by every
# guest vmd boots. It mounts each systemd.mount-extra=WHAT:WHERE:TYPE:OPTIONS
# entry of the kernel command line (key directories, shares, disks) at
# ROOT/WHERE, before the system's own setup runs, so that a key directory
# at /etc/ssh or a disk at /var is in place when NixOS activation fills
# /etc and /var/lib/nixos.
#
# Callers:
#   - the tiny guest's stage 1 (images/guest/stage-1.sh), ROOT=/newroot;
#   - NixOS's scripted stage 1 (nix/guest.nix, boot.initrd.postMountCommands),
#     ROOT=/mnt-root, under busybox ash;
#   - NixOS's systemd stage 1 (nix/guest.nix, the initrd unit
#     vmd-mounts.service), ROOT=/sysroot, under bash with coreutils and
#     util-linux's mount. systemd's own fstab generator may already have
#     mounted these entries there (it reads systemd.mount-extra= in the
#     initrd too): a target that is a mount point already is left as is.
#   - vmd's image init (images/guest/image-init.c), ROOT=/sysroot, with
#     VMD_MOUNTS_NO_SYMLINKS=1: the root is an image, outside input, and
#     its symlinks would resolve against the initrd's root, so a symlink
#     on the way to a target is refused.
#
# It uses only shell builtins, cat, mkdir, ln, sleep and mount, which all
# of them have. Exit status 0, or 1 with a message on stderr: the caller
# decides how the boot fails.
root=${1:?usage: vmd-mounts ROOT}

say() { echo "vmd-mounts: $*" >&2; }

# A mount point already (by mountinfo's 5th field; vmd's paths never need
# mountinfo's octal escapes: it refuses whitespace in them).
is_mounted() {
	while read -r _ _ _ _ mp _; do
		[ "$mp" = "$1" ] && return 0
	done </proc/self/mountinfo
	return 1
}

# /dev/disk/by-id/virtio-SERIAL, the contract's name of each disk: udev
# makes it where udev runs; without udev (the tiny guest), make it from
# sysfs. Links on devtmpfs survive the switch to stage 2.
link_disks() {
	set +f
	for b in /sys/block/vd*; do
		[ -r "$b/serial" ] || continue
		serial=$(cat "$b/serial")
		[ -n "$serial" ] || continue
		[ -e "/dev/disk/by-id/virtio-$serial" ] && continue
		mkdir -p /dev/disk/by-id
		ln -sf "../../${b##*/}" "/dev/disk/by-id/virtio-$serial"
	done
	set -f
}

# A disk's node may appear a little after the initrd starts: wait up to
# 10 s for it, looking again at sysfs each time.
wait_device() {
	i=0
	while [ ! -e "$1" ]; do
		[ "$i" -ge 100 ] && return 1
		link_disks
		[ -e "$1" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 0
}

# Word splitting only: nothing from the command line is globbed.
set -f
mounts=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	systemd.mount-extra=*) mounts="$mounts ${arg#systemd.mount-extra=}" ;;
	esac
done

link_disks
for spec in $mounts; do
	# WHAT:WHERE[:TYPE[:OPTIONS]]; vmd never emits escaped colons: it
	# refuses paths that contain one.
	what=${spec%%:*}
	rest=${spec#*:}
	where=${rest%%:*}
	rest=${rest#"$where"}
	rest=${rest#:}
	type=${rest%%:*}
	rest=${rest#"$type"}
	opts=${rest#:}
	if [ -z "$what" ] || [ -z "$where" ] || [ "$what" = "$spec" ]; then
		say "bad systemd.mount-extra=$spec"
		exit 1
	fi
	case "$where" in
	/*) ;;
	*) say "systemd.mount-extra=$spec: $where is not absolute"; exit 1 ;;
	esac
	dir=$root$where
	is_mounted "$dir" && continue
	if [ "${VMD_MOUNTS_NO_SYMLINKS:-}" = 1 ]; then
		path=$root
		rest=${where#/}
		while [ -n "$rest" ]; do
			path=$path/${rest%%/*}
			case "$rest" in */*) rest=${rest#*/} ;; *) rest= ;; esac
			[ -L "$path" ] && { say "systemd.mount-extra=$spec: ${path#"$root"} is a symlink"; exit 1; }
		done
	fi
	case "$what" in
	/dev/*) wait_device "$what" || { say "no $what for $where"; exit 1; } ;;
	esac
	mkdir -p "$dir" || { say "cannot create $where"; exit 1; }
	if [ -n "$type" ]; then
		mount -t "$type" -o "${opts:-defaults}" "$what" "$dir"
	else
		mount -o "${opts:-defaults}" "$what" "$dir"
	fi || { say "cannot mount $what at $where"; exit 1; }
done
exit 0
