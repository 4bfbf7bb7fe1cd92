local expc = import 'expc.libsonnet';
local huge = std.repeat('x', 100000000);
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), logging+: { wandb+: { tags: [huge] } } }
