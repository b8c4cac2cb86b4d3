# Stage 1: busybox, the init script and the modules it loads, as an
# uncompressed newc cpio (decompressing costs more than loading under TCG).
PATH=$busybox/bin
root=$PWD/root
mkdir -p $root/bin $root/dev $root/proc $root/sys $root/newroot $root/run
cp $busybox/bin/busybox $root/bin/busybox
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox $root/bin/$a; done
# The kernel runs /sbin/modprobe for modules it wants by itself.
ln -s bin $root/sbin
cp $init $root/init
cp $mounts $root/vmd-mounts.sh
chmod 0755 $root/init $root/vmd-mounts.sh
# The image guest's init also runs vmd-net.sh, and finds the store paths of
# what it runs later (qemu-ga, ip and wg, the other modules) in
# /etc/vmd-image-guest: one KEY=VALUE a line.
if [ -n "$net" ]; then
	cp $net $root/vmd-net.sh
	chmod 0755 $root/vmd-net.sh
fi
if [ -n "$guestPaths" ]; then
	mkdir -p $root/etc $root/sysroot $root/nix/store
	for p in $guestPaths; do echo "$p"; done > $root/etc/vmd-image-guest
fi

ver=$(ls $linux/lib/modules)
mdir=lib/modules/$ver
mkdir -p $root/$mdir
# Resolve the dependency closure of $modules from modules.dep.
want=$(awk -v want="$modules" '
	BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) q[w[i]] = 1 }
	{ sub(":", "", $1); name = $1; sub(".*/", "", name); sub("\\.ko$", "", name)
	  gsub("-", "_", name); path[name] = $1; deps[name] = ""
	  for (i = 2; i <= NF; i++) deps[name] = deps[name] " " $i }
	END {
		changed = 1
		while (changed) {
			changed = 0
			for (m in q) {
				n = split(deps[m], d, " ")
				for (i = 1; i <= n; i++) {
					x = d[i]; sub(".*/", "", x); sub("\\.ko$", "", x); gsub("-", "_", x)
					if (!(x in q)) { q[x] = 1; changed = 1 }
				}
			}
		}
		for (m in q) if (m in path) print path[m]
	}' $linux/$mdir/modules.dep)
for ko in $want; do
	mkdir -p $root/$mdir/$(dirname $ko)
	cp $linux/$mdir/$ko $root/$mdir/$ko
done
cp $linux/$mdir/modules.builtin $linux/$mdir/modules.order $root/$mdir/
depmod -b $root $ver

mkdir -p $out
cd $root
find . | sort | cpio -o -H newc > $out/initrd 2>/dev/null
