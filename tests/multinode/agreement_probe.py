"""One rank of the agreement check alone: MANIFEST -> "agreed" on stdout, or the error and exit 1.

Started by DeepSpeed's real launcher in the tests, so the check runs across real processes and
launcher invocations without a whole training run around it.
"""
import sys
from datetime import timedelta

import deepspeed
import torch.distributed as dist

# The shared-memory comm op would be compiled on CPU (~45 s) and is not used by gloo collectives.
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
from trainer.ranks import adopt_launcher_ranks  # noqa: E402

adopt_launcher_ranks()
deepspeed.init_distributed("gloo", timeout=timedelta(seconds=60))

from expc.canonical import load_manifest  # noqa: E402
from expc.errors import ExpcError  # noqa: E402
from trainer.agreement import check_agreement  # noqa: E402

try:
    _, digest = load_manifest(sys.argv[-1])
    check_agreement(digest)
except ExpcError as err:
    print(f"error: {err.render()}", file=sys.stderr, flush=True)
    sys.exit(1)
print("agreed", flush=True)
# Leave together: a gloo group torn down at interpreter exit while a peer still talks aborts
# the process ("terminate called without an active exception").
dist.barrier()
dist.destroy_process_group()
