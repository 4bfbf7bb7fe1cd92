// Hardware profiles, named for the hardware. A profile is frozen into the manifest's `hardware`
// section: processes per node, memory per device, precision support, interconnect, and the
// dense peak TFLOP/s per device that MFU and device-hour estimates divide by.
//
//   local hardware = import 'hardware.libsonnet';
//   hardware.h100_80gb_x8            // one node of 8 H100s
//   hardware.h100_80gb_nodes(4)      // 4 such nodes (32 GPUs)
//   hardware.nodes(hardware.a100_80gb_x8, 2)   // any node profile, repeated
//   hardware.get('a100_40gb_x1')     // by name, with a did-you-mean on a typo
//
// The world size (nodes x procs_per_node) is what the batch arithmetic divides by. The profiles
// are plain objects: `hardware.h100_80gb_x8 { procs_per_node: 4 }` is a half-used node.
local names = import 'names.libsonnet';

local gpu(name, device, procs, memory, bf16, interconnect, tflops) = {
  name: name,
  accelerator: 'cuda',
  backend: 'nccl',
  nodes: 1,
  procs_per_node: procs,
  device: device,
  device_memory_gib: memory,
  bf16: bf16,
  fp16: true,
  interconnect: interconnect,
  peak_tflops: tflops,
};

local profiles = {
  // A laptop or CI box: 2 CPU processes on gloo. fp32 only; 8 GiB budgeted per process.
  cpu_laptop: {
    name: 'cpu_laptop',
    accelerator: 'cpu',
    backend: 'gloo',
    nodes: 1,
    procs_per_node: 2,
    device: 'cpu',
    device_memory_gib: 8,
    bf16: false,
    fp16: false,
    interconnect: 'loopback',
    peak_tflops: 0.1,  // a rough fp32 figure for one core; estimates only
  },
  // Dense bf16 peaks: A100 312 TFLOP/s (PCIe and SXM alike), H100 PCIe 756 TFLOP/s, H100 SXM
  // 989 TFLOP/s (H200: 989 as well).
  a100_40gb_x1: gpu('a100_40gb_x1', 'A100-40GB', 1, 40, true, 'pcie', 312),
  a100_80gb_x8: gpu('a100_80gb_x8', 'A100-80GB', 8, 80, true, 'nvlink', 312),
  h100_80gb_x1: gpu('h100_80gb_x1', 'H100-80GB', 1, 80, true, 'pcie', 756),
  h100_80gb_x8: gpu('h100_80gb_x8', 'H100-80GB', 8, 80, true, 'nvlink', 989),
  // A 24 GB desktop card, the usual LoRA box: RTX 4090, dense bf16 165 TFLOP/s with fp32
  // accumulation (Ada whitepaper), as torch's matmuls run it.
  rtx4090_24gb: gpu('rtx4090_24gb', 'RTX4090-24GB', 1, 24, true, 'pcie', 165),
};

// n copies of a one-node GPU profile, InfiniBand between them; named e.g. 'h100_80gb_x8_n4'.
local nodes(profile, n) =
  assert std.isNumber(n) && n >= 1 && n == std.floor(n) : 'nodes(profile, n): n must be a whole number >= 1, got %s' % [n];
  assert profile.accelerator == 'cuda' && profile.nodes == 1 : 'nodes(profile, n): give a one-node GPU profile, got "%s"' % profile.name;
  if n == 1 then profile
  else profile { name: '%s_n%d' % [profile.name, n], nodes: n, interconnect: 'nvlink+infiniband' };

profiles {
  nodes(profile, n):: nodes(profile, n),

  // N nodes of 8 H100-80GB, NVLink inside a node and InfiniBand between nodes.
  h100_80gb_nodes(n):: nodes(profiles.h100_80gb_x8, n),

  get(name):: names.pick(profiles, 'hardware profile', name),
}
