"""estimate: hand-computed parameter counts, token and FLOP arithmetic, ZeRO memory partitioning."""
import pytest

from expc import estimate
from expc.estimate import GIB

GPT2_124M = {"arch": "gpt", "n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024,
             "vocab_size": 50257, "dropout": 0.0, "bias": True}
DEBUG = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32,
         "vocab_size": 256, "dropout": 0.0, "bias": False}


def manifest(model=DEBUG, nodes=1, procs=4, stage=0, precision="bf16", micro=2, accumulation=1,
             max_steps=100, optimizer="AdamW", zero_extra=None, peak_tflops=100.0):
    ds = {
        "train_batch_size": micro * accumulation * nodes * procs,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "zero_optimization": {"stage": stage, **(zero_extra or {})},
        "optimizer": {"type": optimizer, "params": {"lr": 1e-3}},
    }
    if precision != "fp32":
        ds[precision] = {"enabled": True}
    return {"hardware": {"nodes": nodes, "procs_per_node": procs, "peak_tflops": peak_tflops},
            "model": dict(model), "train": {"max_steps": max_steps}, "deepspeed": ds}


def test_gpt2_124m_parameter_count_matches_the_published_figure():
    # 12 blocks of 12*768^2 + 13*768, 50257x768 tied embedding, 1024x768 positions, final LayerNorm:
    # the 124.44M that nanoGPT prints for GPT-2 small.
    assert estimate.parameter_count(GPT2_124M) == 124_439_808


def test_parameter_count_without_bias_by_hand():
    # per block: 2 LayerNorm weights (2*32) + 12*32^2 = 12352; x2 blocks; 256*32 + 32*32 + 32.
    assert estimate.parameter_count(DEBUG) == 2 * 12352 + 8192 + 1024 + 32


def test_world_tokens_and_flops():
    m = manifest(model=GPT2_124M, nodes=2, procs=8, micro=4, accumulation=2, max_steps=1000)
    assert estimate.world_size(m) == 16
    assert estimate.tokens_per_step(m) == 4 * 2 * 16 * 1024
    assert estimate.total_tokens(m) == 4 * 2 * 16 * 1024 * 1000
    # 6 * (124439808 - 1024*768 positions) + 12 * 12 layers * 768 * 1024
    assert estimate.flops_per_token(m) == 6 * 123_653_376 + 113_246_208
    assert estimate.total_flops(m) == estimate.flops_per_token(m) * estimate.total_tokens(m)


def test_device_hours_divides_by_peak_and_mfu():
    m = manifest(model=GPT2_124M, peak_tflops=100.0)
    seconds = estimate.total_flops(m) / (100e12 * 0.5)
    assert estimate.device_hours(m, mfu=0.5) == pytest.approx(seconds / 3600)
    assert estimate.device_hours(m) == pytest.approx(seconds / 3600 * 0.5 / 0.4)
    with pytest.raises(ValueError):
        estimate.device_hours(m, mfu=0)


NO_PERSISTENCE = {"stage3_param_persistence_threshold": 0}  # every tensor partitioned at stage 3


@pytest.mark.parametrize("stage, params, grads, optim", [
    # The ZeRO paper's 2 + 2 + 12 bytes per parameter, divided by the world size (4) stage by stage.
    (0, 2, 2, 12),
    (1, 2, 2, 12 / 4),
    (2, 2, 2 / 4, 12 / 4),
    (3, 2 / 4, 2 / 4, 12 / 4),
])
def test_zero_stages_partition_model_states(stage, params, grads, optim):
    n = estimate.parameter_count(DEBUG)
    mem = estimate.memory_per_device(manifest(stage=stage, procs=4, zero_extra=NO_PERSISTENCE))
    assert mem.parameters * GIB == pytest.approx(n * params)
    assert mem.gradients * GIB == pytest.approx(n * grads)
    assert mem.optimizer * GIB == pytest.approx(n * optim)
    assert mem.offloaded == 0
    assert mem.allocated == pytest.approx(mem.parameters + mem.gradients + mem.optimizer + mem.activations
                                          + mem.buffers)
    assert mem.total == pytest.approx(mem.allocated * (1 + estimate.FRAGMENTATION))


def test_stage3_keeps_small_tensors_whole_on_every_rank():
    # DEBUG's largest tensor has 8192 elements: below DeepSpeed's default threshold (1e5) every
    # tensor persists, so each rank holds the whole model as well as its partition.
    n = estimate.parameter_count(DEBUG)
    mem = estimate.memory_per_device(manifest(stage=3, procs=4))
    assert mem.parameters * GIB == pytest.approx(n * 2 / 4 + n * 2)
    # at a threshold of 4096 elements only the MLP matrices (32 x 128 = 4096 elements)
    # and the 256 x 32 embedding are partitioned; the rest persists: five LayerNorm weights, the
    # 32 x 32 position embedding, and per block the qkv (3 x 32 x 32) and output (32 x 32) matrices
    mem = estimate.memory_per_device(manifest(stage=3, procs=4, zero_extra={"stage3_param_persistence_threshold": 4096}))
    small = 32 * 5 + 32 * 32 + 2 * (3 * 32 * 32 + 32 * 32)
    assert mem.parameters * GIB == pytest.approx(n * 2 / 4 + small * 2)


def test_buffers_follow_the_bucket_sizes():
    bf16 = 2
    two = estimate.memory_per_device(manifest(stage=2, zero_extra={"reduce_bucket_size": 1000}))
    assert two.buffer_parts == ((("reduce bucket", 1000 * bf16 / GIB)),)
    overlap = estimate.memory_per_device(manifest(stage=2, zero_extra={"reduce_bucket_size": 1000, "overlap_comm": True}))
    assert overlap.buffers * GIB == 2 * 1000 * bf16
    one = estimate.memory_per_device(manifest(stage=1, zero_extra={"reduce_bucket_size": 1000}))
    assert one.buffers * GIB == 1000 * bf16
    assert estimate.memory_per_device(manifest(stage=0)).buffers == 0
    # stage 3: one bucket, and the largest tensor (the 256 x 32 embedding) plus the prefetch,
    # capped by max_live_parameters
    three = estimate.memory_per_device(manifest(stage=3, zero_extra={
        "reduce_bucket_size": 1000, "stage3_prefetch_bucket_size": 500, "stage3_param_persistence_threshold": 0}))
    assert dict(three.buffer_parts) == {"reduce bucket": 1000 * bf16 / GIB, "gathered parameters": (8192 + 500) * bf16 / GIB}
    capped = estimate.memory_per_device(manifest(stage=3, zero_extra={
        "reduce_bucket_size": 1000, "stage3_prefetch_bucket_size": 500, "stage3_max_live_parameters": 300,
        "stage3_param_persistence_threshold": 0}))
    assert dict(capped.buffer_parts)["gathered parameters"] == 300 * bf16 / GIB


# A GPT with the ZeRO paper's 7.5B parameters: 36 blocks of width 4096 (12 x 36 x 4096^2 = 7.25B)
# and a 60480-token vocabulary (tied embedding) with a 1024-token context bring it to 7.49998B.
GPT_7_5B = {"arch": "gpt", "n_layer": 36, "n_head": 32, "n_embd": 4096, "block_size": 1024,
            "vocab_size": 60480, "dropout": 0.0, "bias": False}


def test_the_7_5b_example_has_the_papers_parameter_count():
    assert estimate.parameter_count(GPT_7_5B) == pytest.approx(7.5e9, rel=1e-5)


@pytest.mark.parametrize("stage, paper_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_7_5b_on_64_devices(stage, paper_gb):
    # Rajbhandari et al., Figure 1: Psi = 7.5B, N_d = 64, K = 12 (mixed-precision Adam): the
    # baseline, P_os, P_os+g and P_os+g+p hold 120, 31.4, 16.6 and 1.9 GB of model states per
    # device. 8 nodes x 8 devices, fp16; the paper's GB are 10^9 bytes.
    m = manifest(model=GPT_7_5B, nodes=8, procs=8, stage=stage, precision="fp16", micro=1)
    assert estimate.world_size(m) == 64
    mem = estimate.memory_per_device(m)
    assert round(mem.model_states * GIB / 1e9, 1) == paper_gb


def test_fp32_keeps_no_master_copy_and_sgd_one_moment():
    n = estimate.parameter_count(DEBUG)
    mem = estimate.memory_per_device(manifest(precision="fp32", procs=1))
    assert (mem.parameters, mem.gradients, mem.optimizer) == pytest.approx((4 * n / GIB, 4 * n / GIB, 8 * n / GIB))
    sgd = estimate.memory_per_device(manifest(precision="fp16", procs=1, optimizer="SGD"))
    assert sgd.optimizer == pytest.approx(8 * n / GIB)  # fp32 master + one momentum
    # ZeRO copies its fp32 partition even in fp32 (measured: tests/trainer/test_memory.py)
    for stage in (1, 2, 3):
        zero = estimate.memory_per_device(manifest(precision="fp32", procs=2, stage=stage))
        assert zero.optimizer == pytest.approx(12 * n / 2 / GIB)


def test_offload_moves_states_to_host():
    n = estimate.parameter_count(DEBUG)
    cpu = {"device": "cpu", "pin_memory": True}
    mem = estimate.memory_per_device(manifest(stage=3, procs=2, zero_extra={
        "offload_optimizer": cpu, "offload_param": cpu, **NO_PERSISTENCE}))
    assert mem.optimizer == 0 and mem.parameters == 0
    assert mem.gradients == pytest.approx(n * 2 / 2 / GIB)
    # optimizer state (12) with its fp32 gradient partition (4), and the bf16 weights (2)
    assert mem.host == pytest.approx(n * (12 + 4 + 2) / 2 / GIB)
    assert mem.host_per_node == pytest.approx(2 * mem.host)  # two processes on the node
    # offload_param means nothing below stage 3 (DeepSpeed ignores it there)
    mem2 = estimate.memory_per_device(manifest(stage=2, procs=2, zero_extra={"offload_param": cpu}))
    assert mem2.parameters == pytest.approx(n * 2 / GIB)
    nvme = estimate.memory_per_device(manifest(stage=2, procs=2, zero_extra={"offload_optimizer": {"device": "nvme"}}))
    assert nvme.host == 0 and nvme.nvme == pytest.approx(n * (12 + 4) / 2 / GIB)


def test_activations_by_hand():
    # bf16: 2 layers x 34 bytes x (2 micro x 32 tokens) x 32 width, plus fp32 logits and gradient;
    # 32 bytes without dropout (no masks: measured, tests/trainer/test_memory.py)
    tokens = 2 * 32
    with_dropout = manifest(model={**DEBUG, "dropout": 0.1}, micro=2)
    assert estimate.memory_per_device(with_dropout).activations * GIB == 2 * 34 * tokens * 32 + 2 * 4 * tokens * 256
    mem = estimate.memory_per_device(manifest(micro=2))
    assert mem.activations * GIB == 2 * 32 * tokens * 32 + 2 * 4 * tokens * 256
    fp32 = estimate.memory_per_device(manifest(micro=2, precision="fp32"))
    assert fp32.activations * GIB == 2 * 64 * tokens * 32 + 2 * 4 * tokens * 256


def test_step_time_and_recompute():
    m = manifest(model=GPT2_124M, procs=4, micro=4, accumulation=2, peak_tflops=100.0)
    seconds = estimate.tokens_per_step(m) * estimate.flops_per_token(m) / (4 * 100e12 * 0.5)
    assert estimate.step_seconds(m, mfu=0.5) == pytest.approx(seconds)
    assert estimate.recompute_factor(m) == 1  # a GPT has no checkpointing knob: never recomputes


def test_describe_lists_the_breakdown():
    mem = estimate.MemoryEstimate(1.0, 2.0, 3.0, 4.04, buffers=0.5, fragmentation=1.05, host=5.0)
    assert mem.describe() == ("parameters 1.0 + gradients 2.0 + optimizer 3.0 + activations 4.0 + buffers 0.5"
                              " + fragmentation 1.1 = 11.6 GiB (plus 5.0 GiB offloaded to host memory)")


def test_a_hugging_face_base_by_its_own_layout():
    from pathlib import Path

    from expc.archs import arch_of
    from expc.compile import compile_spec

    root = Path(__file__).resolve().parent.parent
    (m,) = compile_spec(root / "specs" / "qwen_lora.jsonnet")  # Qwen2.5-1.5B, LoRA, checkpointing on
    model, arch = m.data["model"], arch_of(m.data["model"])
    assert sum(e * times for e, times in arch.tensors(model)) == estimate.parameter_count(model)
    c = model["config"]
    h, q, kv, i = c["hidden_size"], c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"], c["intermediate_size"]
    assert arch.activations_per_token_layer(model) == 12 * h + 8 * q + 8 * kv + 8 * i
    adapter = m.data["adapter"]  # LoRA r 16 with dropout on q, k, v, o (expc.adapters.standard)
    assert adapter["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"] and adapter["dropout"] > 0
    # each targeted layer keeps its dropped-out input (2 bytes), the mask (1) and A's output (2r)
    lora = 4 * 2 * adapter["r"] + 2.5 * (h + h + h + q)
    layer = 12 * h + 8 * q + 8 * kv + 8 * i + lora
    tokens = 4 * 1024  # micro batch 4 x max_length 1024
    logits = 8 * tokens * c["vocab_size"]
    on = estimate.memory_per_device(m.data)
    assert on.activation_checkpointing
    # checkpointing: each layer keeps its input (2h bytes per token), one layer is recomputed
    assert on.activations * GIB == c["num_hidden_layers"] * 2 * h * tokens + layer * tokens + logits
    off = estimate.memory_per_device({**m.data, "model": {**model, "gradient_checkpointing": False}})
    assert off.activations * GIB == c["num_hidden_layers"] * layer * tokens + logits
    # the adapter's weights sit beside the frozen base; only they carry gradients and Adam's state
    trainable = estimate.trainable_parameters(m.data)
    assert on.parameters * GIB == (estimate.parameter_count(model) + trainable) * 2
    assert on.gradients * GIB == trainable * 2
    assert on.optimizer * GIB == trainable * 12
    # recomputing the forward (2 per frozen parameter) adds about half of LoRA's 4 per frozen
    # parameter (attention and the adapter's own weights move it a little)
    assert estimate.recompute_factor(m.data) == pytest.approx(1.5, rel=0.02)


def test_an_adapters_tensors_count_beside_the_base_at_stage_3():
    from pathlib import Path

    from expc.compile import compile_spec

    root = Path(__file__).resolve().parent.parent
    (m,) = compile_spec(root / "specs" / "qwen_lora.jsonnet")
    three = {**m.data, "deepspeed": {**m.data["deepspeed"], "zero_optimization": {"stage": 3}}}
    trainable = estimate.trainable_parameters(m.data)
    persistent_base = {**three, "adapter": None}
    # LoRA's A and B (r 16 x 1536 or 256 elements) are below the 1e5 threshold: whole on every rank
    with_adapter = estimate.memory_per_device(three).parameters - estimate.memory_per_device(persistent_base).parameters
    assert with_adapter * GIB == pytest.approx(trainable * 2 + trainable * 2)  # its share (world 1) and whole
