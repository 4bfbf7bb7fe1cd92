"""Rank variables: whatever launcher started this process -> torch.distributed's RANK, WORLD_SIZE,
LOCAL_RANK (and a check that MASTER_ADDR/MASTER_PORT are there).

DeepSpeed's own launcher (single node, pdsh, ssh-less) sets them itself. Under mpirun (expc's
`--launcher mpi`, DeepSpeed's openmpi launcher) only OpenMPI's OMPI_COMM_WORLD_* variables are
set, and DeepSpeed would then ask mpi4py for them; reading OpenMPI's variables directly needs no
mpi4py. Call `adopt_launcher_ranks()` before `deepspeed.init_distributed`.
"""
from __future__ import annotations

import os

from expc.errors import ExpcError

OPENMPI = {"RANK": "OMPI_COMM_WORLD_RANK", "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
           "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_SIZE": "OMPI_COMM_WORLD_LOCAL_SIZE"}


def adopt_launcher_ranks(environ=None) -> str:
    """Fill the torch.distributed variables from OpenMPI's when they are missing; return which
    launcher's variables are in use ("deepspeed", "openmpi", or "none" for a plain process)."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ:
        return "deepspeed"
    if "OMPI_COMM_WORLD_RANK" not in environ:
        return "none"
    for ours, theirs in OPENMPI.items():
        environ[ours] = environ[theirs]
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in environ]
    if missing:
        raise ExpcError(f"started by mpirun without {' and '.join(missing)}: launch with "
                        "`expc run MANIFEST --hostfile HOSTS --launcher mpi`, which passes them")
    return "openmpi"
