// Experiment presets: mixins for how long and how often.
//   quick_test      a smoke run: a few dozen steps, frequent logs and checkpoints
//   full_training   a long run: sparse evaluation and checkpoints, several kept
//   fp32, bf16, fp16  set the precision knob (the default is bf16 where the hardware has it)
//
//   expc.experiment + expc.presets.quick_test + { ... }
// A preset is a mixin like any other: fields after it win, so `train+: { max_steps: 10 }`
// after `quick_test` shortens it further.
{
  quick_test:: {
    train+: {
      max_steps: 50,
      log_interval: 5,
      eval_interval: 25,
      eval_iters: 4,
      checkpoint_interval: 25,
      keep_checkpoints: 1,
    },
  },
  full_training:: {
    train+: {
      max_steps: 100000,
      log_interval: 50,
      eval_interval: 1000,
      eval_iters: 50,
      checkpoint_interval: 2000,
      keep_checkpoints: 3,
    },
  },
  fp32:: { precision:: 'fp32' },
  bf16:: { precision:: 'bf16' },
  fp16:: { precision:: 'fp16' },
}
