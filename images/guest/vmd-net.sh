#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vmd-net ROOT NETTOOLS: the guest contract's hostname and network, shared
# by the tiny guest's stage 2 (ROOT=/) and the image init (ROOT=/sysroot).
#   - systemd.hostname=NAME on the kernel command line: the hostname;
#   - ip=ADDR::GATEWAY:NETMASK::DEVICE:off: the first NIC (or DEVICE);
#   - ROOT/etc/wireguard/wg0.conf: wg0, only if ROOT/etc/wireguard is a
#     mount point (the key directory vmd mounts there): an image's own
#     /etc/wireguard is not vmd's to act on, and its symlinks would
#     resolve against the initrd's root.
# NETTOOLS is the closure's iproute2 ip and wg (busybox's ip cannot create
# links), run through their own dynamic loader. Everything else is busybox
# (PATH=/bin). Failures are reported on stderr; exit status 1 if any.
root=${1:?usage: vmd-net ROOT NETTOOLS}
nettools=${2:?usage: vmd-net ROOT NETTOOLS}
root=${root%/}
status=0

net_tool() {
	tool=$1
	shift
	"$nettools/lib/ld-linux-x86-64.so.2" --library-path "$nettools/lib" "$nettools/bin/$tool" "$@"
}

ipconf=
set -f
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	systemd.hostname=*) hostname "${arg#systemd.hostname=}" || status=1 ;;
	ip=*) ipconf=${arg#ip=} ;;
	esac
done
set +f

if [ -n "$ipconf" ]; then
	modprobe virtio_net
	set -f
	old_ifs=$IFS
	IFS=:
	set -- $ipconf
	IFS=$old_ifs
	set +f
	addr=$1 gw=$3 mask=$4 dev=$6
	if [ -z "$dev" ]; then
		for d in /sys/class/net/*; do
			[ "${d##*/}" = lo ] || [ ! -e "$d/device" ] || { dev=${d##*/}; break; }
		done
	fi
	eval "$(ipcalc -p "$addr" "$mask")"
	ip link set lo up
	if ip addr add "$addr/$PREFIX" dev "$dev" && ip link set "$dev" up; then
		[ -z "$gw" ] || ip route add default via "$gw"
	else
		echo "vmd guest: cannot configure $dev with $addr/$PREFIX" >&2
		status=1
	fi
fi
# A mount point (mountinfo's 5th field; vmd's paths need none of its octal
# escapes), as in vmd-mounts.sh.
is_mounted() {
	while read -r _ _ _ _ mp _; do
		[ "$mp" = "$1" ] && return 0
	done </proc/self/mountinfo
	return 1
}

conf=$root/etc/wireguard/wg0.conf
if is_mounted "$root/etc/wireguard" && [ -r "$conf" ]; then
	modprobe wireguard
	# wg setconf takes the file without wg-quick's own keys.
	grep -v -e '^Address' -e '^#' "$conf" > /run/wg0.setconf
	wg_addr=$(sed -n 's/^Address *= *//p' "$conf")
	wg_routes=$(sed -n 's/^AllowedIPs *= *//p' "$conf" | tr ',' ' ')
	if net_tool ip link add wg0 type wireguard && net_tool wg setconf wg0 /run/wg0.setconf; then
		ip addr add "$wg_addr" dev wg0
		ip link set wg0 up
		# replace: the address's own subnet is routed already.
		for r in $wg_routes; do ip route replace "$r" dev wg0; done
	else
		echo "vmd guest: cannot bring up wg0" >&2
		status=1
	fi
	rm -f /run/wg0.setconf
fi
exit $status
