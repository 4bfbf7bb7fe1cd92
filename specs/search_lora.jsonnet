// A Bayesian search over a LoRA fine-tune of the committed tiny Llama (as finetune_lora.jsonnet),
// on 2 CPU processes: `expc search` asks Optuna's TPE for each trial's learning rate and LoRA
// rank, builds the spec with them as top-level arguments and runs the manifest.
//
//   expc search specs/search_lora.jsonnet --propose 2   # the next two trials' manifests, to review
//   expc search specs/search_lora.jsonnet               # every trial of the budget, one at a time
//   expc build specs/search_lora.jsonnet --tla lr=0.003 --tla lora_rank=16   # one trial by hand
//
// The declaration is in no manifest: `expc build` of this spec builds the defaults' experiment,
// and a trial is the same digest whichever search proposed it.
local expc = import 'expc.libsonnet';

function(lr=1e-2, lora_rank=16)
  expc.search.declare(
    expc.experiment + expc.zero.stage2 + expc.presets.quick_test + {
      hardware: expc.hardware.cpu_laptop,
      model: expc.models.hf('assets/tiny-llama'),
      adapter: expc.adapters.lora(lora_rank, 2 * lora_rank,
                                  target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj'],
                                  modules_to_save=['lm_head']),
      data: expc.data.jsonl('assets/instructions/train.jsonl', val='assets/instructions/val.jsonl',
                            template=expc.templates.plain, max_length=64),
      global_batch_size:: 16,
      micro_batch_size:: 8,
      lr:: lr,
      warmup_steps:: 5,
      train+: { max_steps: 50, log_interval: 10, eval_interval: 25, eval_iters: 2, checkpoint_interval: 25 },
      logging+: { wandb+: { tags: ['search', 'lora', 'cpu'] } },
    },
    space={
      lr: expc.search.log_uniform(1e-3, 3e-2),
      lora_rank: expc.search.int(4, 32, log=true),
    },
    metric='val_loss',
    direction='minimize',
    trials=8,
    seed=1,
  )
