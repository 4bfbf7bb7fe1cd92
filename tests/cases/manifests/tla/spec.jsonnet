// A spec with declared inputs: `expc build tla.jsonnet --tla lr=1e-3 --tla name=probe`.
local expc = import 'expc.libsonnet';

function(lr=3e-4, name='default')
  expc.experiment + expc.zero.stage1 + expc.presets.quick_test + {
    hardware: expc.hardware.cpu_laptop,
    model: expc.models.gpt_debug,
    data: expc.data.synthetic(),
    global_batch_size:: 4,
    micro_batch_size:: 2,
    lr:: lr,
    logging+: { wandb+: { tags: [name] } },
  }
