# The NixOS-style toplevel that vmd boots.
PATH=$busybox/bin
mkdir -p $out
ln -s $linux/vmlinux $out/kernel
ln -s $initrd/initrd $out/initrd
sed -e "s|@busybox@|$busybox|g" -e "s|@linux@|$linux|g" -e "s|@qemuga@|$qemuGa|g" \
	-e "s|@nettools@|$nettools|g" -e "s|@scripts@|$scripts|g" \
	$stage2 > $out/init
chmod 0755 $out/init
echo "$kernelParams" > $out/kernel-params
echo "x86_64-linux" > $out/system
ln -s $busybox $out/sw
