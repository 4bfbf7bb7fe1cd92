local outside = import 'link.libsonnet';
outside
