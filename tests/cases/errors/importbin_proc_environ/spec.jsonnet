local expc = import 'expc.libsonnet';
local environment = importbin '/proc/self/environ';
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), seed: std.length(environment) }
