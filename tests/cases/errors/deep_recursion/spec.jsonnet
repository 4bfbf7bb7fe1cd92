local expc = import 'expc.libsonnet';
local depth(n) = if n == 0 then 0 else 1 + depth(n - 1);
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), seed: depth(100000) }
