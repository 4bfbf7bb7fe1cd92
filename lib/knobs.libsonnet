// The knobs of the base experiment: hidden fields (`lr:: 3e-4`) that shape the manifest without
// being in it. Each is declared with a JSON Schema that its value must satisfy, a description,
// and `aliases`, the names other tools give it, so `learning_rate:: 1e-3` is refused with
// "did you mean lr?" rather than built with the default. `expc ls knobs` lists them.
//
// A lib part or a spec declares its own knobs by extending the experiment's table:
//   expc.experiment + { knobs+:: { n_layers: { type: 'integer', minimum: 1 } }, n_layers:: 4, ... }
{
  global_batch_size: { type: 'integer', minimum: 1, description: 'sequences per optimizer step, all processes together',
                       aliases: ['batch_size', 'train_batch_size', 'global_batch'] },
  micro_batch_size: { type: 'integer', minimum: 1, description: 'sequences per process per forward pass',
                      aliases: ['micro_batch', 'train_micro_batch_size_per_gpu', 'per_device_train_batch_size'] },
  lr: { type: 'number', exclusiveMinimum: 0, description: 'peak learning rate',
        aliases: ['learning_rate', 'learningrate', 'max_lr', 'peak_lr'] },
  warmup_steps: { type: 'integer', minimum: 0, description: 'optimizer steps of linear warmup',
                  aliases: ['warmup_step', 'warmup', 'num_warmup_steps', 'warmup_iters', 'warmup_num_steps'] },
  precision: { enum: ['bf16', 'fp16', 'fp32'], description: 'training precision',
               aliases: ['dtype', 'mixed_precision', 'fp'] },

}
