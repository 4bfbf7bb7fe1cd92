local expc = import 'expc.libsonnet';
// 1,000 arrays inside each other, built without recursion: too deep to write out
local nested = std.foldl(function(inner, i) [inner], std.range(1, 1000), []);
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), logging+: { wandb+: { tags: nested } } }
