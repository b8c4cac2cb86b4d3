# The kernel plus the module subset staged by tests/guest/build, with a
# modules.dep that busybox modprobe understands.
$bb cp -r $src $out
$bb chmod -R u+w $out
ver=$($bb ls $out/lib/modules)
$bb depmod -b $out $ver
