// Derived batch quantities. DeepSpeed wants all three of train_batch_size,
// train_micro_batch_size_per_gpu and gradient_accumulation_steps; a spec states the global batch
// and the micro batch, and the accumulation follows from the hardware's world size.
{
  world_size(hardware):: hardware.nodes * hardware.procs_per_node,

  accumulation(global_batch, micro_batch, world_size)::
    local per_step = micro_batch * world_size;
    assert global_batch % per_step == 0 :
           'global batch %d is not a multiple of micro batch %d x world size %d = %d' % [global_batch, micro_batch, world_size, per_step];
    global_batch / per_step,

  tokens_per_step(exp):: exp.deepspeed.train_batch_size * exp.model.block_size,
}
