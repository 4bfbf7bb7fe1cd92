local outside = import '../outside.libsonnet';
outside
