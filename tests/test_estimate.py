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


@pytest.mark.parametrize("stage, params, grads, optim", [
    # The ZeRO paper's 2 + 2 + 12 bytes per parameter, divided by the world size (4) stage by stage.
    (0, 2, 2, 12),
    (1, 2, 2, 12 / 4),
    (2, 2, 2 / 4, 12 / 4),
    (3, 2 / 4, 2 / 4, 12 / 4),
])
def test_zero_stages_partition_model_states(stage, params, grads, optim):
    n = estimate.parameter_count(DEBUG)
    mem = estimate.memory_per_device(manifest(stage=stage, procs=4))
    assert mem.parameters * GIB == pytest.approx(n * params)
    assert mem.gradients * GIB == pytest.approx(n * grads)
    assert mem.optimizer * GIB == pytest.approx(n * optim)
    assert mem.offloaded == 0
    assert mem.total == pytest.approx(mem.parameters + mem.gradients + mem.optimizer + mem.activations)


def test_zero_paper_7_5b_on_64_devices():
    # The paper's Figure 1: 7.5B parameters, 64 devices: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB.
    n = 7.5e9
    for stage, expected_gb in [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)]:
        mem = estimate.memory_per_device(manifest(stage=stage, procs=64))
        per_param = (mem.parameters + mem.gradients + mem.optimizer) * GIB / estimate.parameter_count(DEBUG)
        assert n * per_param / 1e9 == pytest.approx(expected_gb, abs=0.05)


def test_fp32_keeps_no_master_copy_and_sgd_one_moment():
    n = estimate.parameter_count(DEBUG)
    mem = estimate.memory_per_device(manifest(precision="fp32", procs=1))
    assert (mem.parameters, mem.gradients, mem.optimizer) == pytest.approx((4 * n / GIB, 4 * n / GIB, 8 * n / GIB))
    sgd = estimate.memory_per_device(manifest(precision="fp16", procs=1, optimizer="SGD"))
    assert sgd.optimizer == pytest.approx(8 * n / GIB)  # fp32 master + one momentum


def test_offload_moves_states_to_host():
    n = estimate.parameter_count(DEBUG)
    cpu = {"device": "cpu", "pin_memory": True}
    mem = estimate.memory_per_device(manifest(stage=3, procs=2, zero_extra={
        "offload_optimizer": cpu, "offload_param": cpu}))
    assert mem.optimizer == 0 and mem.parameters == 0
    assert mem.gradients == pytest.approx(n * 2 / 2 / GIB)
    assert mem.offloaded == pytest.approx(n * (12 + 2) / 2 / GIB)
    # offload_param means nothing below stage 3 (DeepSpeed ignores it there)
    mem2 = estimate.memory_per_device(manifest(stage=2, procs=2, zero_extra={"offload_param": cpu}))
    assert mem2.parameters == pytest.approx(n * 2 / GIB)


def test_activations_by_hand():
    # bf16: 2 layers x 34 bytes x (2 micro x 32 tokens) x 32 width, plus fp32 logits and gradient.
    mem = estimate.memory_per_device(manifest(micro=2))
    tokens = 2 * 32
    assert mem.activations * GIB == 2 * 34 * tokens * 32 + 2 * 4 * tokens * 256
    fp32 = estimate.memory_per_device(manifest(micro=2, precision="fp32"))
    assert fp32.activations * GIB == 2 * 68 * tokens * 32 + 2 * 4 * tokens * 256


def test_describe_lists_the_breakdown():
    mem = estimate.MemoryEstimate(1.0, 2.0, 3.0, 4.04, offloaded=5.0)
    assert mem.describe() == ("parameters 1.0 + gradients 2.0 + optimizer 3.0 + activations 4.0 = 10.0 GiB"
                              " (plus 5.0 GiB offloaded to host memory)")
