#!@busybox@/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Stage 2 of the tiny vmd guest: the closure's init, run as PID 1 on a tmpfs
# root with the store already mounted.
#
# The second half of the guest contract: start qemu-ga on the
# org.qemu.guest_agent.0 port, then write READY=1 to the io.vmd.notify port.
# busybox init then stays PID 1: it reaps, respawns the agent, and powers off
# cleanly when acpid sees the ACPI power button (QMP system_powerdown).
export PATH=/bin

bb=@busybox@/bin
$bb/mkdir -p /etc /tmp /run /var /root /lib /dev/pts /dev/shm
$bb/ln -sfn $bb /bin
$bb/ln -sfn $bb /sbin
ln -sfn @linux@/lib/modules /lib/modules
chmod 1777 /tmp
grep -q " /dev/pts " /proc/mounts || mount -t devpts devpts /dev/pts
grep -q " /dev/shm " /proc/mounts || mount -t tmpfs -o mode=1777 shm /dev/shm

# vmd.guest.poweroff-after=SECONDS: power off that long after READY (for
# demos and tests of a guest that ends by itself).
poweroff_after=
activation=
serial=shell
set -f
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vmd.guest.poweroff-after=*) poweroff_after=${arg#vmd.guest.poweroff-after=} ;;
	vmd.guest.simulate-activation) activation=1 ;;
	vmd.guest.console=*) serial=${arg#vmd.guest.console=} ;;
	esac
done
set +f

# vmd.guest.simulate-activation (tests): the first thing NixOS activation
# does to /etc and /var, so a test can see that the stage-1 mounts were
# already there: a key directory at /etc/ssh receives sshd_config next to
# the host's keys, and a disk at /var receives /var/lib/nixos.
if [ -n "$activation" ]; then
	mkdir -p /etc/static/ssh /etc/ssh /var/lib/nixos
	echo "# written by the simulated activation" > /etc/static/ssh/sshd_config
	ln -sfn /etc/static/ssh/sshd_config /etc/ssh/sshd_config ||
		echo "vmd guest: activation: cannot write /etc/ssh/sshd_config" >&2
	echo "root:0" > /var/lib/nixos/uid-map ||
		echo "vmd guest: activation: cannot write /var/lib/nixos" >&2
fi

port_node() {
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && { echo "/dev/${p##*/}"; return 0; }
	done
	return 1
}
agent=$(port_node org.qemu.guest_agent.0)
notify=$(port_node io.vmd.notify)

modprobe -a button evdev 2>/dev/null

# The hostname and the network, before READY: the script the image init
# runs too.
/bin/sh @scripts@/vmd-net.sh / @nettools@
# busybox acpid maps the power button to /etc/acpi/PWRF/00000080. Nothing in
# this guest needs an orderly stop beyond clean filesystems, and busybox
# init's own shutdown sleeps for seconds, so sync, remount read-only and go.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\nsync\numount -a -r 2>/dev/null\nexec poweroff -f\n' > /etc/acpi/PWRF/00000080
chmod 0755 /etc/acpi/PWRF/00000080
# No password: this is a test guest, and its console is only reachable
# through vmd's control socket.
echo "root::0:0:root:/root:/bin/sh" > /etc/passwd
echo "root:x:0:" > /etc/group

{
	echo "::respawn:/bin/acpid -f -c /etc/acpi -l /run/acpid.log"
	[ -n "$agent" ] && echo "::respawn:@qemuga@/lib/ld-linux-x86-64.so.2 --library-path @qemuga@/lib @qemuga@/bin/qemu-ga -m virtio-serial -p $agent -t /run"
	[ -n "$notify" ] && echo "::once:/etc/vmd-ready '$agent' '$notify' '$poweroff_after'"
	# vmd.guest.console=shell (the default): a root shell on the serial
	# console; =login: a login prompt (root, no password); =none: nothing.
	case "$serial" in
	shell) echo "ttyS0::respawn:-/bin/sh" ;;
	login) echo "::respawn:/bin/getty -L 115200 ttyS0 vt100" ;;
	esac
	echo "::shutdown:/bin/sync"
	echo "::shutdown:/bin/umount -a -r"
} > /etc/inittab

# READY=1 only once qemu-ga holds its port, so the host can exec right away.
cat > /etc/vmd-ready <<'READY'
#!/bin/sh
i=0
while [ -n "$1" ] && [ $i -lt 100 ]; do
	ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q " $1\$" && break
	usleep 50000
	i=$((i + 1))
done
printf 'READY=1\n' > "$2"
case "$3" in
''|*[!0-9]*) ;;
*) sleep "$3"; poweroff ;;
esac
READY
chmod 0755 /etc/vmd-ready

exec init
