// The ZeRO paper's example (Rajbhandari et al., Figure 1): a 7.5B-parameter model, 64 devices,
// mixed-precision Adam (K = 12). A GPT of 36 blocks of width 4096 with a 60,480-token vocabulary
// has 7.49998B parameters; 8 nodes x 8 H100s; fp16 as in the paper. The stage is an argument.
local expc = import 'expc.libsonnet';

function(stage=0)
  expc.experiment + expc.zero.stage(stage) + expc.presets.fp16 + {
    hardware: expc.hardware.h100_80gb_nodes(8),
    model: expc.models.gpt(36, 32, 4096, block_size=1024, vocab_size=60480),
    data: { source: 'synthetic', val_fraction: 0.1 },
    global_batch_size:: 64,
    micro_batch_size:: 1,
  }
