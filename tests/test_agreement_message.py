"""The rank-agreement verdict: which fields differ, and on which ranks and hosts."""
from __future__ import annotations

from dataclasses import replace

from trainer.agreement import Fingerprint, disagreement, source_commit, span

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
