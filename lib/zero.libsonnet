// ZeRO presets: mixins for an experiment's `deepspeed.zero_optimization`, with DeepSpeed's own
// key names. Stage 0 is plain data parallelism; 1 partitions optimizer state, 2 adds gradients,
// 3 adds the parameters themselves. Offload moves optimizer state (and, at stage 3, parameters)
// to CPU memory.
//
//   expc.experiment + zero.stage(2)
//   expc.experiment + zero.stage(3) + zero.offload_optimizer
//
// Communication overlap is on for GPUs (NCCL runs on its own streams) and off on CPU, where it
// only adds threads competing for the same cores.
local stage(n) =
  assert std.member([0, 1, 2, 3], n) : 'ZeRO stage must be 0, 1, 2 or 3, got %s' % [n];
  {
    local exp = self,
    deepspeed+: { zero_optimization: { stage: n } + (
      if n >= 2 then { overlap_comm: exp.hardware.accelerator == 'cuda', contiguous_gradients: true } else {}
    ) },
  };

{
  stage(n):: stage(n),
  stage0:: stage(0),
  stage1:: stage(1),
  stage2:: stage(2),
  stage3:: stage(3),
  offload_optimizer:: {
    deepspeed+: { zero_optimization+: {
      assert self.stage >= 1 : 'optimizer offload needs ZeRO stage 1 or more',
      offload_optimizer: { device: 'cpu', pin_memory: true },
    } },
  },
  offload_param:: {
    deepspeed+: { zero_optimization+: {
      assert self.stage == 3 : 'parameter offload needs ZeRO stage 3',
      offload_param: { device: 'cpu', pin_memory: true },
    } },
  },
}
