// Two "nodes" of one CPU process each, for the multi-node tests on loopback: a debug-size GPT on
// synthetic data, a handful of steps. The `nodes` argument gives the single-node twin (1 node x 2
// processes) that must train to the same weights; `seed` gives a manifest that differs.
local expc = import 'expc.libsonnet';

function(nodes=2, seed=1337)
  expc.experiment + expc.zero.stage2 + {
    seed: seed,
    hardware: expc.hardware.cpu_laptop { name: 'cpu_loopback', nodes: nodes, procs_per_node: 2 / nodes },
    model: expc.models.gpt_debug,
    data+: { source: 'synthetic' },
    global_batch_size:: 4,
    micro_batch_size:: 2,
    lr:: 1e-3,
    train+: {
      max_steps: 6,
      log_interval: 2,
      eval_interval: 6,
      eval_iters: 1,
      checkpoint_interval: 6,
      keep_checkpoints: 1,
      sample_tokens: 0,
    },
  }
