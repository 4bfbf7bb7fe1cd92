local a = import 'cycle_a.libsonnet';
{ experiment: a.experiment }
