local expc = import 'expc.libsonnet';
(import 'import_self.jsonnet') + { seed: 2 }
