// Optimizer and learning-rate schedule presets, as DeepSpeed `optimizer` and `scheduler`
// sections. They read hidden knobs of the experiment they are mixed into (lr, warmup_steps,
// train.max_steps), so changing a knob later recomputes them.
//
// `torch_adam: true` makes DeepSpeed use torch.optim.AdamW: nothing is compiled at run time
// (FusedAdam is JIT-built on first use, about a minute on CPU) and results do not depend on a
// compiled kernel.
{
  adamw:: {
    local exp = self,
    deepspeed+: {
      optimizer: {
        type: 'AdamW',
        params: {
          lr: exp.lr,
          betas: [0.9, 0.95],
          eps: 1e-8,
          weight_decay: 0.1,
          torch_adam: true,
        },
      },
    },
  },

  // Linear warmup to `lr`, cosine decay to lr * min_ratio at train.max_steps.
  warmup_cosine(min_ratio=0.1):: {
    local exp = self,
    deepspeed+: {
      scheduler: {
        type: 'WarmupCosineLR',
        params: {
          total_num_steps: exp.train.max_steps,
          warmup_num_steps: exp.warmup_steps,
          warmup_min_ratio: 0.0,
          cos_min_ratio: min_ratio,
        },
      },
    },
  },

  // Linear warmup, then constant.
  warmup_constant:: {
    local exp = self,
    deepspeed+: {
      scheduler: {
        type: 'WarmupLR',
        params: {
          warmup_min_lr: 0.0,
          warmup_max_lr: exp.lr,
          warmup_num_steps: exp.warmup_steps,
          warmup_type: 'linear',
        },
      },
    },
  },
}
