"""Experiment tracking: the manifest's `logging.wandb` -> a logger with `log(metrics, step)` and
`finish()`. Rank 0 gets the real W&B client; other ranks, and `mode: disabled`, get a logger that
does nothing, so the training loop never asks "is W&B on?".

The W&B run id is derived from the digest (and the attempt, after `expc run --rerun`), so a
resumed run continues the same W&B run; the W&B config is the whole manifest. With no API key
the run is logged offline under runs/<digest>/wandb/ (`wandb sync` uploads it later).

A sweep's executor (`expc run SPEC --parallel N`) names each member's run through the launch
environment, outside the manifest, so a member is the same digest in any sweep: EXPC_WANDB_GROUP
(the sweep), EXPC_WANDB_NAME (the member) and EXPC_WANDB_SWEEP (JSON: the sweep, the member and
its axis values, added to the config under "sweep").
"""
from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path

GROUP_ENV, NAME_ENV, SWEEP_ENV = "EXPC_WANDB_GROUP", "EXPC_WANDB_NAME", "EXPC_WANDB_SWEEP"


class NoLogger:
    def log(self, metrics: dict, step: int) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger:
    """Tracking must never fail a run: if W&B's service process dies (a scheduler's SIGTERM to
    every process of the job reaches it too), say so once in the log and carry on without it;
    metrics.jsonl still has everything."""

    def __init__(self, run):
        self.run = run

    def log(self, metrics: dict, step: int) -> None:
        self._call(self.run.log, metrics, step=step)

    def finish(self, exit_code: int = 0) -> None:
        self._call(self.run.finish, exit_code=exit_code)

    def _call(self, method, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            method(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (any failure of the tracker, not of training)
            logging.getLogger("trainer").warning("W&B stopped working (%s: %s); metrics.jsonl continues",
                                                 type(err).__name__, err)
            self.run = None


def wandb_run_id(digest: str, attempt: int) -> str:
    return f"expc-{digest[:16]}" + (f"-{attempt}" if attempt > 1 else "")


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(configured: str) -> str:
    """What the manifest asks for, except that "online" without an API key logs offline."""
    if configured == "online" and not has_api_key():
        return "offline"
    return configured


def start_tracking(manifest: dict, digest: str, run_dir: Path, rank: int, attempt: int):
    settings = manifest["logging"]["wandb"]
    mode = wandb_mode(settings["mode"])
    if rank != 0 or mode == "disabled":
        return NoLogger()
    import wandb

    group, name, config = sweep_naming(manifest, digest)
    run = wandb.init(project=settings["project"], entity=settings.get("entity"), tags=settings["tags"],
                     id=wandb_run_id(digest, attempt), name=name, group=group, resume="allow", mode=mode,
                     dir=str(run_dir), config=config)
    return WandbLogger(run)


def sweep_naming(manifest: dict, digest: str, env=None) -> tuple[str | None, str, dict]:
    """(group, run name, config): the sweep's and member's names from the executor's
    environment, else no group and the digest's first 12 characters."""
    env = os.environ if env is None else env
    config = dict(manifest)
    if env.get(SWEEP_ENV):
        config["sweep"] = json.loads(env[SWEEP_ENV])
    return env.get(GROUP_ENV) or None, env.get(NAME_ENV) or digest[:12], config
