local outside = import '/etc/hostname';
outside
