// Derived batch quantities. DeepSpeed wants all three of train_batch_size,
// train_micro_batch_size_per_gpu and gradient_accumulation_steps; a spec states the global batch
// and the micro batch, and the accumulation follows from the hardware's world size.
//
//   batch.world_size(expc.hardware.h100_80gb_nodes(4))       // 32
//   batch.accumulation(512, 4, 32)                           // 4
//   batch.global_batch(4, 4, 32)                             // 512: micro x accumulation x world
//   batch.tokens_per_step(exp)                               // sequences per step x block_size
local whole(what, n) =
  assert std.isNumber(n) && n >= 1 && n == std.floor(n) : '%s must be a whole number >= 1, got %s' % [what, n];
  n;

{
  world_size(hardware):: hardware.nodes * hardware.procs_per_node,

  accumulation(global_batch, micro_batch, world_size)::
    local per_step = whole('micro batch', micro_batch) * whole('world size', world_size);
    assert whole('global batch', global_batch) % per_step == 0 :
           'global batch %d is not a multiple of micro batch %d x world size %d = %d' % [global_batch, micro_batch, world_size, per_step];
    global_batch / per_step,

  // The inverse, for specs that think in accumulation steps (GPT-NeoX's habit).
  global_batch(micro_batch, accumulation, world_size)::
    whole('micro batch', micro_batch) * whole('accumulation', accumulation) * whole('world size', world_size),

  tokens_per_step(exp):: exp.deepspeed.train_batch_size * exp.model.block_size,
}
