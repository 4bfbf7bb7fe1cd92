local expc = import 'expc.libsonnet';
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), name: std.extVar('HOME') }
