local expc = import 'expc.libsonnet';
local read = std.native('readFile');
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), name: read('/etc/passwd') }
