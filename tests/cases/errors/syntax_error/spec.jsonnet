local expc = import 'expc.libsonnet';

expc.experiment + {
  hardware: expc.hardware.cpu_laptop,,
}
