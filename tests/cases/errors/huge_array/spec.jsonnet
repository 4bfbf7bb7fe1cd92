local expc = import 'expc.libsonnet';
local huge = std.range(1, 1000000);
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), logging+: { wandb+: { tags: huge } } }
