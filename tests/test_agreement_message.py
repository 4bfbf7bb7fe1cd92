"""The rank-agreement verdict: which fields differ, and on which ranks and hosts; which hosts lack
the devices for their processes."""
from __future__ import annotations

from dataclasses import replace

from trainer.agreement import (Fingerprint, device_shortage, disagreement, local_processes, source_commit, span,
                               verdict)

BASE = Fingerprint(rank=0, host="node-a", manifest="1e69703c1a0b" + "0" * 52, python="3.11.2",
                   torch="2.13.0+cpu", deepspeed="0.19.8", commit="a" * 40)


def ranks(n, hosts_per_rank):
    return [replace(BASE, rank=r, host=hosts_per_rank(r)) for r in range(n)]


def test_agreeing_ranks_have_no_message():
    assert disagreement(ranks(4, lambda r: f"node-{r // 2}")) is None


def test_the_odd_rank_out_is_named_last_with_its_host():
    prints = ranks(8, lambda r: f"node-{r // 4}")
    prints[6] = replace(prints[6], manifest="5d0b7f2e9a11" + "f" * 52, torch="2.12.0")
    assert disagreement(prints) == (
        "ranks disagree, so none of them will train:\n"
        "  manifest digest: 1e69703c1a0b on ranks 0-5, 7 (hosts node-0, node-1); "
        "5d0b7f2e9a11 on rank 6 (host node-1)\n"
        "  torch: 2.13.0+cpu on ranks 0-5, 7 (hosts node-0, node-1); 2.12.0 on rank 6 (host node-1)")


def test_dirty_commits_show_their_diff_digest():
    prints = ranks(2, lambda r: f"node-{r}")
    prints[1] = replace(prints[1], commit="a" * 40 + "+dirty:0123456789ab")
    assert disagreement(prints) == (
        "ranks disagree, so none of them will train:\n"
        "  git commit: aaaaaaaaaaaa on rank 0 (host node-0); "
        "aaaaaaaaaaaa+dirty:0123456789ab on rank 1 (host node-1)")


def test_span():
    assert span([7, 0, 1, 2, 5, 8]) == "0-2, 5, 7-8"


def test_source_commit_outside_a_checkout(tmp_path):
    assert source_commit(tmp_path) == "none"


def gpu_ranks(devices_by_host: dict[str, int], procs: int):
    hosts = [h for h in devices_by_host for _ in range(procs)]
    return [replace(BASE, rank=r, host=h, devices=devices_by_host[h], local_procs=procs) for r, h in enumerate(hosts)]


def test_a_host_with_too_few_devices_is_named():
    prints = gpu_ranks({"gpu-a": 8, "gpu-b": 7, "gpu-c": 8}, procs=8)
    message = ("too few devices, so none of the ranks will train:\n"
               "  host gpu-b: 7 CUDA devices for 8 processes (ranks 8-15)")
    assert device_shortage(prints) == message
    assert verdict(prints) == message
    assert device_shortage(gpu_ranks({"gpu-a": 8, "gpu-b": 8}, procs=8)) is None
    assert device_shortage(gpu_ranks({"gpu-a": 8}, procs=4)) is None  # spare devices are fine
    assert device_shortage(gpu_ranks({"gpu-a": 0}, procs=1)) == (
        "too few devices, so none of the ranks will train:\n  host gpu-a: 0 CUDA devices for 1 process (rank 0)")


def test_cpu_ranks_are_not_counted_for_devices():
    assert BASE.devices is None
    assert verdict(ranks(4, lambda r: f"node-{r // 2}")) is None


def test_disagreement_and_shortage_are_reported_together():
    prints = gpu_ranks({"gpu-a": 2, "gpu-b": 1}, procs=2)
    prints[0] = replace(prints[0], deepspeed="0.18.0")
    assert verdict(prints) == (
        "ranks disagree, so none of them will train:\n"
        "  deepspeed: 0.19.8 on ranks 1-3 (hosts gpu-a, gpu-b); 0.18.0 on rank 0 (host gpu-a)\n"
        "too few devices, so none of the ranks will train:\n"
        "  host gpu-b: 1 CUDA device for 2 processes (ranks 2-3)")


def test_local_processes_come_from_the_launcher_first():
    assert local_processes(8, {"LOCAL_WORLD_SIZE": "4"}) == 4  # torchrun
    assert local_processes(8, {"LOCAL_SIZE": "2"}) == 2  # DeepSpeed's launcher, mpirun through ranks.py
    assert local_processes(8, {}) == 8  # the manifest's procs_per_node
