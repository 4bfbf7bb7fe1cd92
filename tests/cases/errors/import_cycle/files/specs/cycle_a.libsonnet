local b = import 'cycle_b.libsonnet';
{ experiment: b.experiment }
