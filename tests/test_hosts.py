"""Hostfiles, multi-node preflight and the .deepspeed_env file: exact messages users see."""
from __future__ import annotations

import pytest

from expc.launch.deepspeed_env import deepspeed_env_text, rank_environment
from expc.errors import ExpcError
from expc.launch.hosts import check_hostfile, check_node_rank, read_hostfile

TWO_BY_TWO = {"nodes": 2, "procs_per_node": 2}


def hostfile(tmp_path, text):
    path = tmp_path / "hosts.txt"
    path.write_text(text)
    return path


def error_text(call, *args):
    with pytest.raises(ExpcError) as caught:
        call(*args)
    return caught.value.render()


def test_reads_deepspeed_format_with_comments(tmp_path):
    path = hostfile(tmp_path, "# two boxes\n\nworker-0 slots=8\n  10.0.0.2   slots=4  # spare\n")
    hosts = read_hostfile(path).hosts
    assert [(h.name, h.slots, h.line) for h in hosts] == [("worker-0", 8, 3), ("10.0.0.2", 4, 4)]


def test_every_bad_line_is_reported_with_its_line(tmp_path):
    path = hostfile(tmp_path, "a slots=2\nb slots 2\nc slots=0\na slots=4\nd;rm slots=1\ne slots=x\n")
    assert error_text(read_hostfile, path) == (
        f"5 problems in {path}:\n"
        f'- {path}:2: expected "HOST slots=N", got "b slots 2"\n'
        f'- {path}:3: slots must be a whole number of at least 1, got "slots=0"\n'
        f"- {path}:4: host a is listed twice (first at line 1)\n"
        f'- {path}:5: "d;rm" is not a host name or address\n'
        f'- {path}:6: slots must be a whole number of at least 1, got "slots=x"')


def test_empty_and_missing_hostfiles(tmp_path):
    path = hostfile(tmp_path, "# nothing yet\n\n")
    assert error_text(read_hostfile, path) == (
        f'{path}: names no hosts; expected lines like "worker-0 slots=8"')
    assert error_text(read_hostfile, tmp_path / "nope.txt") == f"no such hostfile: {tmp_path / 'nope.txt'}"


def test_hostfile_must_match_the_manifest_shape(tmp_path):
    path = hostfile(tmp_path, "a slots=2\nb slots=1\nc slots=8\n")
    assert error_text(check_hostfile, read_hostfile(path), TWO_BY_TWO) == (
        f"2 problems in {path}:\n"
        f"- {path}: names 3 hosts, but the manifest is planned for 2 nodes (hardware.nodes); "
        "list exactly the 2 nodes to run on\n"
        f"- {path}:2: host b has slots=1, but the manifest runs 2 processes per node "
        "(hardware.procs_per_node)")


def test_a_matching_hostfile_passes_and_spare_slots_are_fine(tmp_path):
    path = hostfile(tmp_path, "a slots=2\nb slots=8\n")
    assert [h.name for h in check_hostfile(read_hostfile(path), TWO_BY_TWO)] == ["a", "b"]


def test_one_host_for_two_nodes(tmp_path):
    path = hostfile(tmp_path, "a slots=2\n")
    assert error_text(check_hostfile, read_hostfile(path), TWO_BY_TWO) == (
        f"{path}: names 1 host, but the manifest is planned for 2 nodes (hardware.nodes); "
        "list exactly the 2 nodes to run on")


def test_node_rank_checks():
    assert error_text(check_node_rank, 2, "h0", TWO_BY_TWO) == (
        "--node-rank 2 is out of range: the manifest is planned for 2 nodes (hardware.nodes), "
        "so node ranks are 0 to 1")
    assert error_text(check_node_rank, 1, None, TWO_BY_TWO) == (
        "--node-rank 1 needs --master-addr: the address of node 0, which every node can reach")
    assert error_text(check_node_rank, 0, "h0", {"nodes": 1, "procs_per_node": 2}) == (
        "--node-rank 0: the manifest is planned for 1 node (hardware.nodes); "
        "a per-node launch needs a multi-node manifest")
    assert error_text(check_node_rank, 0, "h0 ; reboot", TWO_BY_TWO) == (
        '--master-addr "h0 ; reboot" is not a host name or address')
    check_node_rank(1, "10.0.0.1", TWO_BY_TWO)


MANIFEST = {"launch": {"threads_per_process": 1, "env": {"NCCL_DEBUG": "WARN"}},
            "hardware": {"accelerator": "cpu"}}


def test_rank_environment_order_and_filter():
    operator = {"WANDB_MODE": "offline", "WANDB_API_KEY": "secret", "HOME": "/root",
                "NCCL_DEBUG": "INFO", "GLOO_SOCKET_IFNAME": "lo"}
    env = rank_environment(MANIFEST, {"WANDB_DIR": "runs/x"}, operator)
    assert deepspeed_env_text(env) == (
        "OMP_NUM_THREADS=1\nDS_ACCELERATOR=cpu\nGLOO_SOCKET_IFNAME=lo\nNCCL_DEBUG=WARN\n"
        "WANDB_MODE=offline\nWANDB_DIR=runs/x\n")


def test_values_a_shell_would_mangle_are_refused():
    env = {"OK": "a b", "BAD": 'say "hi"', "WORSE": "$HOME", "bad-name": "x"}
    assert error_text(deepspeed_env_text, env) == (
        "3 problems in .deepspeed_env:\n"
        "- BAD='say \"hi\"': DeepSpeed's multi-node launchers pass values through a shell in double "
        'quotes; a line break, ", $, ` or \\ cannot be carried\n'
        "- WORSE='$HOME': DeepSpeed's multi-node launchers pass values through a shell in double "
        'quotes; a line break, ", $, ` or \\ cannot be carried\n'
        '- "bad-name" is not a valid environment variable name')
