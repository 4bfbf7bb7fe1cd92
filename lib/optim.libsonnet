// Optimizer and learning-rate schedule presets, as DeepSpeed `optimizer` and `scheduler`
// sections. They read hidden knobs of the experiment they are mixed into (lr, warmup_steps,
// train.max_steps), so changing a knob later recomputes them.
//
// `torch_adam: true` makes DeepSpeed use torch.optim.AdamW: nothing is compiled at run time
// (FusedAdam is JIT-built on first use, about a minute on CPU) and results do not depend on a
// compiled kernel.
//
//   expc.experiment + expc.optim.adamw_with(weight_decay=0.0) + expc.optim.warmup_linear_decay
// The experiment already mixes in `adamw` and `warmup_cosine()`; a later mixin replaces them.
local adamw_with(betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1) =
  assert std.length(betas) == 2 && betas[0] >= 0 && betas[0] < 1 && betas[1] >= 0 && betas[1] < 1 :
         'adamw betas must be two numbers in [0, 1), got %s' % [betas];
  assert weight_decay >= 0 : 'adamw weight_decay must be >= 0, got %s' % [weight_decay];
  {
    local exp = self,
    deepspeed+: {
      optimizer: {
        type: 'AdamW',
        params: {
          lr: exp.lr,
          betas: betas,
          eps: eps,
          weight_decay: weight_decay,
          torch_adam: true,
        },
      },
    },
  };

{
  // GPT-2/3 style: betas (0.9, 0.95), weight decay 0.1.
  adamw:: adamw_with(),
  adamw_with(betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1):: adamw_with(betas, eps, weight_decay),

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

  // Linear warmup to `lr`, then linear decay to 0 at train.max_steps (GPT-NeoX's "linear").
  warmup_linear_decay:: {
    local exp = self,
    deepspeed+: {
      scheduler: {
        type: 'WarmupDecayLR',
        params: {
          total_num_steps: exp.train.max_steps,
          warmup_min_lr: 0.0,
          warmup_max_lr: exp.lr,
          warmup_num_steps: exp.warmup_steps,
          warmup_type: 'linear',
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
