// fp16 with ZeRO-3 and both offloads on one A100-40GB, plus DeepSpeed sections the schema
// generates from DeepSpeed's own models (activation checkpointing, monitors, comms logger).
local expc = import 'expc.libsonnet';

expc.experiment + expc.zero.stage3 + expc.zero.offload_optimizer + expc.zero.offload_param + {
  hardware: expc.hardware.a100_40gb_x1,
  model: expc.models.gpt_350m,
  global_batch_size:: 8,
  micro_batch_size:: 2,
  precision:: 'fp16',
  deepspeed+: {
    activation_checkpointing: { partition_activations: false, cpu_checkpointing: false },
    flops_profiler: { enabled: false, profile_step: 5 },
    csv_monitor: { enabled: false, output_path: 'csv', job_name: 'fp16' },
    comms_logger: { enabled: false },
  },
}
