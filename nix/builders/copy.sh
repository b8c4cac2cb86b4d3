$bb cp -r $src $out
