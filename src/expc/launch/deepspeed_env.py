"""Rank environment: the variables every rank needs -> the text of a `.deepspeed_env` file.

Over pdsh (and mpirun, and srun with --export) only a few variable families reach the remote
ranks; DeepSpeed's launcher adds whatever a `.deepspeed_env` file lists, one `KEY=VAL` per line.
It reads the file from the home folder and the working folder, or from the path in
`DS_ENV_FILE`: expc writes it into the run folder and points `DS_ENV_FILE` there, so a stray
`~/.deepspeed_env` cannot leak into a run and two runs never share one.

DeepSpeed splits each line at its first `=`, crashes on a blank line, and pastes the value into
a shell command inside double quotes; values that would break that (line breaks, `"`, `$`, a
backquote, a backslash) are refused here with the variable's name.
"""
from __future__ import annotations

import os
import re

from expc.errors import ExpcError, Problem

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UNSAFE = re.compile(r'[\n\r"$`\\]')

# Families taken from the operator's environment. W&B settings (mode, folder, entity) and the
# socket choices of gloo and NCCL matter on every node; the API key is deliberately left out: it
# would be written to a file in the run folder and shown on pdsh's command line. Log in with
# `wandb login` on each node instead (or rely on offline mode, the default). expc's own variables
# are not taken from the shell (a single-node dry run would then depend on it): the rendezvous
# timeout, EXPC_DIST_TIMEOUT_S, comes from `expc run --dist-timeout` through the plan (multinode.py).
PASSED_PREFIXES = ("WANDB_", "GLOO_SOCKET_IFNAME", "NCCL_", "TP_SOCKET_IFNAME")
NEVER_PASSED = {"WANDB_API_KEY"}


def rank_environment(manifest: dict, extra: dict[str, str] | None = None,
                     operator_env: dict[str, str] | None = None) -> dict[str, str]:
    """Variables every rank gets, in a fixed order: pinned threads, the accelerator, the
    operator's W&B and socket settings, the launch plan's own variables, then the manifest's
    `launch.env` (last, so the manifest wins: it is what was reviewed)."""
    operator_env = dict(os.environ if operator_env is None else operator_env)
    env: dict[str, str] = {
        "OMP_NUM_THREADS": str(manifest["launch"]["threads_per_process"]),
        "DS_ACCELERATOR": manifest["hardware"]["accelerator"],
    }
    for key in sorted(operator_env):
        if key.startswith(PASSED_PREFIXES) and key not in NEVER_PASSED:
            env[key] = operator_env[key]
    env.update(extra or {})
    env.update(manifest["launch"]["env"])
    return env


def deepspeed_env_text(env: dict[str, str]) -> str:
    """`KEY=VAL` lines, no blank lines, newline at the end; every unsafe value reported at once."""
    problems = []
    for key, value in env.items():
        if not NAME.match(key):
            problems.append(Problem(f'"{key}" is not a valid environment variable name'))
        elif UNSAFE.search(value):
            problems.append(Problem(
                f"{key}={value!r}: DeepSpeed's multi-node launchers pass values through a shell in "
                'double quotes; a line break, ", $, ` or \\ cannot be carried'))
    if problems:
        raise ExpcError(problems, context=".deepspeed_env")
    return "".join(f"{key}={value}\n" for key, value in env.items())
