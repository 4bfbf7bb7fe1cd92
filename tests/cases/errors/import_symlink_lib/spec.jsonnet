local leak = import 'leak.libsonnet';
leak
