# The image guest's NixOS-style toplevel. `init` is the image init itself
# (the initrd's /init is a copy): vmd passes init= as for any system, and
# the init, already running from the initrd, ignores it.
PATH=$busybox/bin
mkdir -p $out
ln -s $linux/vmlinux $out/kernel
ln -s $initrd/initrd $out/initrd
ln -s $init $out/init
echo "$kernelParams" > $out/kernel-params
echo "x86_64-linux" > $out/system
ln -s $busybox $out/sw
ln -s $qemuGa $out/qemu-ga
ln -s $nettools $out/nettools
