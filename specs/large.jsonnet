// A large distributed run: GPT 1.3B on 4 nodes x 8 H100-80GB (32 GPUs), ZeRO stage 3, bf16,
// on OpenWebText token shards. GPT-3 XL's recipe: 1M tokens per step (1024 sequences x 1024
// tokens: micro batch 4 x accumulation 8 x 32 GPUs), lr 2e-4, cosine to 10%.
//
// The node count is a top-level argument: `expc build specs/large.jsonnet --tla nodes=8` gives
// the 64-GPU manifest, whose accumulation halves so the global batch (and the digest of
// everything else) stays the same recipe.
local expc = import 'expc.libsonnet';

function(nodes=4)
  expc.experiment + expc.zero.stage3 + expc.presets.full_training + {
    hardware: expc.hardware.h100_80gb_nodes(nodes),
    model: expc.models.gpt_1_3b,
    data: expc.data.tokens('data/openwebtext'),
    global_batch_size:: 1024,
    micro_batch_size:: 4,
    lr:: 2e-4,
    warmup_steps:: 1000,
    train+: { checkpoint_interval: 1000 },
    logging+: { wandb+: { tags: ['large', 'gpt_1_3b', 'zero3'] } },
  }
