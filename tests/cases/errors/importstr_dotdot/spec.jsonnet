local expc = import 'expc.libsonnet';
local passwd = importstr '../../../../../../../../../../../../../../etc/passwd';
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug, data: expc.data.synthetic(), name: passwd }
