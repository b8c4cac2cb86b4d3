# Installs busybox with one symlink per applet, so that scripts can use a
# "#!.../bin/sh" line and argv[0] names the applet.
$bb mkdir -p $out/bin
$bb cp $src/busybox $out/bin/busybox
for a in $($bb --list); do
	[ "$a" = busybox ] || $bb ln -s busybox $out/bin/$a
done
