"""What DeepSpeed holds per rank, counted tensor by tensor: run by the real `deepspeed` launcher
with manifests as arguments, one engine after another in the same processes (one launch for
every ZeRO stage), each rank writing `<out>/<manifest stem>.rank<N>.json`.

For each manifest: build its model and engine exactly as the trainer does (the manifest's
`deepspeed` section verbatim), take two training steps (Adam's state exists after the first),
then the forward and backward of the first micro batch of a third step (accumulation
holds that step's gradients from there to its boundary), and count, by unique
storage, the bytes of:

    parameters   every parameter's data, and its ZeRO-3 partition (ds_tensor)
    gradients    every tensor holding gradients then: the parameters' .grad, the optimizer's
                 fp32 partitions' .grad, and ZeRO's own gradient buffers and partitions
    optimizer    the inner optimizer's state (Adam's moments) and ZeRO's fp32 partitions (the
                 master copy), when they are not the model's own parameters
    buffers      ZeRO's communication buckets (the reduce bucket)
    activations  what the forward saved for the backward pass (saved-tensor hooks), still held
                 after it, the weights left out

    deepspeed --num_gpus 2 --master_port P tests/trainer/memory_census.py OUT m1.json m2.json ...
"""
from __future__ import annotations

import copy
import gc
import json
import os
import sys
from datetime import timedelta
from pathlib import Path


def storages(tensors) -> dict[int, int]:
    """data_ptr -> bytes of each distinct storage among `tensors` (views of one buffer count once)."""
    found = {}
    for t in tensors:
        if t is None or not t.numel():
            continue
        storage = t.untyped_storage()
        found[storage.data_ptr()] = storage.nbytes()
    return found


def tensors_in(value) -> list:
    """The tensors in a value of nested dicts, lists and tuples."""
    import torch

    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    return []


def census(engine) -> dict:
    import torch

    module = engine.module
    params = storages([p.data for p in module.parameters()]
                      + [getattr(p, "ds_tensor", None) for p in module.parameters()])
    zero = engine.optimizer
    inner = getattr(zero, "optimizer", zero)
    # ZeRO's fp32 partitions: stage 3 hands them to the inner optimizer only during its step
    masters = [p for group in inner.param_groups for p in group["params"]]
    masters += tensors_in(getattr(zero, "single_partition_of_fp32_groups", None))
    masters += tensors_in(getattr(zero, "fp32_partitioned_groups_flat", None))
    master_storages = {k: v for k, v in storages(masters).items() if k not in params}
    state = storages([v for s in inner.state.values() for v in s.values() if torch.is_tensor(v)])
    optimizer = {**master_storages, **state}

    grads = storages([p.grad for p in module.parameters()] + [getattr(p, "grad_accum", None) for p in module.parameters()]
                     + [p.grad for p in masters])
    # ZeRO's own gradient holders: stage 1/2's partition buffer, averaged partitions and the
    # gradients it keeps between micro batches (all_grad_tensors), stage 3's flat partitions.
    holders = []
    for name in ("grads_in_partition", "averaged_gradients", "all_grad_tensors", "grad_partitions_flat_buffer",
                 "_DeepSpeedZeroOptimizer_Stage3__param_id_to_grad_partition"):
        holders += tensors_in(getattr(zero, name, None))
    grads.update(storages(holders))
    grads = {k: v for k, v in grads.items() if k not in params and k not in optimizer}

    buckets = []
    for bucket in (getattr(zero, "ipg_buckets", None) or {}).values():
        buckets += tensors_in(getattr(bucket, "buffer", None))
    buffers = {k: v for k, v in storages(buckets).items() if k not in grads and k not in params}

    # Every other tensor alive on this rank, so nothing large goes uncounted unnoticed.
    known = {**params, **optimizer, **grads, **buffers}
    other = {}
    for obj in gc.get_objects():
        try:
            if torch.is_tensor(obj) and obj.numel():
                other.update({k: v for k, v in storages([obj]).items() if k not in known})
        except (RuntimeError, AttributeError, TypeError, ReferenceError):  # half torn down by an earlier engine
            continue
    return {"parameters": sum(params.values()), "gradients": sum(grads.values()),
            "optimizer": sum(optimizer.values()), "buffers": sum(buffers.values()),
            "other_largest": sorted(other.values(), reverse=True)[:5]}  # for a reader; not asserted


def measure(manifest_path: Path, out: Path) -> None:
    import deepspeed
    import torch

    from expc.compile.canonical import load_manifest
    from trainer import data
    from trainer.models import build_model

    manifest, _ = load_manifest(manifest_path)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    source = data.load(manifest, Path.cwd(), world, manifest["deepspeed"]["gradient_accumulation_steps"])
    torch.manual_seed(manifest["seed"])
    model = build_model(manifest, Path.cwd())
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable,
                                           config=copy.deepcopy(manifest["deepspeed"]))
    micro, accumulation = engine.train_micro_batch_size_per_gpu(), engine.gradient_accumulation_steps()
    for step in range(2):
        for m in range(accumulation):
            _, loss = engine(*source.batch(data.TRAIN, step, rank, m, micro, "cpu"))
            engine.backward(loss)
            engine.step()
    # The third step's first micro batch: with accumulation its gradients are all still held
    # (ZeRO 1 reduces them at the boundary; 2 and 3 as they come), and no update has run.
    saved = []

    def pack(tensor):  # every tensor autograd keeps for the backward pass
        saved.append(tensor.untyped_storage())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _, loss = engine(*source.batch(data.TRAIN, 2, rank, 0, micro, "cpu"))
    # Activations: what the forward saved and still holds now, before the backward pass, beyond
    # the weights (a matmul saves its weight too; ZeRO-3 has freed the gathered ones by now).
    weights = storages([p.data for p in engine.module.parameters()]
                       + [getattr(p, "ds_tensor", None) for p in engine.module.parameters()])
    activations = sum({s.data_ptr(): s.nbytes() for s in saved if s.data_ptr() not in weights}.values())
    saved.clear()
    engine.backward(loss)
    counted = census(engine)
    counted["activations"] = activations
    (out / f"{manifest_path.stem}.rank{rank}.json").write_text(json.dumps(counted, indent=2) + "\n")
    engine.destroy()
    del engine, model, trainable, loss
    gc.collect()


def main(argv: list[str]) -> int:
    argv = [a for a in argv if not a.startswith("--local_rank")]
    out, manifests = Path(argv[0]), [Path(a) for a in argv[1:]]
    threads = 1  # pinned, as the trainer does (DEEPSPEED_NOTES)
    import faulthandler

    faulthandler.dump_traceback_later(180, exit=True)  # a hung collective names where it hangs
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import deepspeed.comm.torch  # loads the module whose shm builder is switched off below
    import torch

    torch.set_num_threads(threads)
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None  # nothing compiled (DEEPSPEED_NOTES)
    deepspeed.init_distributed(dist_backend="gloo", timeout=timedelta(seconds=120), verbose=False)
    for path in manifests:
        measure(path, out)
        torch.distributed.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
