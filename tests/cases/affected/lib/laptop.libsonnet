local hardware = import 'hardware.libsonnet';
{ profile: hardware.cpu_laptop }
