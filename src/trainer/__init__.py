"""The DeepSpeed trainer: reads one manifest, nothing else."""
