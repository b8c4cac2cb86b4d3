#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The floor for tests/bench/boot: what a careful hand-written script does to
# boot the same closure the same way as vmd (same virtiofsd, same QEMU
# devices and memory backend), with nothing else. Prints READY when the
# guest sends READY=1, then kills everything.
#
# Usage: floor.sh CLOSURE WORKDIR
set -eu
closure=$1
d=$2
mkdir -p "$d"
rm -f "$d"/*.sock
params=$(cat "$closure/kernel-params" 2>/dev/null || true)

/usr/lib/qemu/virtiofsd --socket-path="$d/fs.sock" -o source=/nix/store -o cache=always \
	-o sandbox=namespace -o log_level=warn 2>>"$d/log" &
vfs=$!
trap 'kill -9 $vfs ${qemu:-} ${reader:-} 2>/dev/null; wait 2>/dev/null; rm -f "$d"/*.sock' EXIT
while [ ! -S "$d/fs.sock" ]; do sleep 0.005; done

qemu-system-x86_64 -name guest=floor -nodefaults -no-user-config -display none -no-reboot \
	-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny \
	-machine pc,accel=tcg,memory-backend=mem -smp 1 -m 256M \
	-object memory-backend-memfd,id=mem,size=256M,share=on \
	-kernel "$closure/kernel" -initrd "$closure/initrd" \
	-append "console=ttyS0 panic=-1 systemd.hostname=floor init=$closure/init $params" \
	-chardev socket,id=qmp,path="$d/qmp.sock",server=on,wait=off -mon chardev=qmp,mode=control \
	-chardev file,id=console,path="$d/console" -serial chardev:console \
	-device virtio-serial-pci,id=vser0 \
	-chardev socket,id=notify,path="$d/notify.sock",server=on,wait=on \
	-device virtserialport,bus=vser0.0,chardev=notify,name=io.vmd.notify \
	-chardev socket,id=agent,path="$d/agent.sock",server=on,wait=off \
	-device virtserialport,bus=vser0.0,chardev=agent,name=org.qemu.guest_agent.0 \
	-chardev socket,id=fs0,path="$d/fs.sock" \
	-device vhost-user-fs-pci,chardev=fs0,tag=nix-store,queue-size=1024 2>>"$d/log" &
qemu=$!
# wait=on: QEMU does not run the guest until this reader is connected.
# The socket file appears at bind(), a moment before listen(): retry.
exec 3< <(socat -u UNIX-CONNECT:"$d/notify.sock",retry=1000,interval=0.005 -)
reader=$!
grep -m1 -q '^READY=1' <&3
echo READY
