"""Model families ("archs") as the compiler sees them. For each value of `model.arch`: the JSON
Schema of its `model` section, its parameter count, FLOPs per token and sizes for the estimates,
whether it takes an adapter, and the name of the trainer function that builds it (a
"module:function" string, imported only by the trainer, so `expc build` never imports torch).

    arch.py          Arch (what an arch declares) and Dims
    gpt.py           "gpt": the trainer's own GPT, nanoGPT's names
    hf_causal_lm.py  "hf_causal_lm": a Hugging Face causal LM (a local folder or a pinned hub
                     revision), with the shape of its config.json frozen into the manifest

Other packages add archs through the entry-point group `expc.archs`, each entry naming an `Arch`
object (docs/archs.md). The group is read from the installed distributions' `entry_points.txt`
files directly: `importlib.metadata` costs ~60 ms of imports, a third of `expc build`.

May import: the standard library and the shared ground (expc.errors) only.
"""
from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path

from expc.errors import ExpcError, did_you_mean

from .arch import Arch, Dims

__all__ = ["Arch", "Dims", "GROUP", "arch_of", "archs"]

GROUP = "expc.archs"


@lru_cache(maxsize=None)
def archs() -> dict[str, Arch]:
    """Every arch this installation knows: the built-ins, then the entry points."""
    from . import gpt, hf_causal_lm

    found = {a.name: a for a in (gpt.ARCH, hf_causal_lm.ARCH)}
    for name, target in _entry_points(GROUP):
        module, _, attr = target.partition(":")
        try:
            __import__(module)
            arch = getattr(sys.modules[module], attr)
        except Exception as err:  # a broken plug-in names itself rather than crash the build
            raise ExpcError(f"the arch plug-in {name!r} ({target}, entry point group {GROUP!r}) does not "
                            f"load: {type(err).__name__}: {err}") from None
        if not isinstance(arch, Arch) or arch.name != name:
            raise ExpcError(f"the entry point {name!r} = {target!r} in group {GROUP!r} must name an "
                            f"expc.archs.Arch whose name is {name!r}")
        if name in found:
            raise ExpcError(f"two archs are named {name!r}: a plug-in ({target}) and another one")
        found[name] = arch
    return found


def arch_of(model: dict) -> Arch:
    """The Arch of a model section whose `arch` the schema has already checked."""
    name = model["arch"]
    known = archs()
    if name not in known:
        raise ExpcError(f"unknown model arch {name!r}{did_you_mean(name, known)}; this installation has: "
                        f"{', '.join(sorted(known))}", "$.model.arch")
    return known[name]


def _entry_points(group: str) -> list[tuple[str, str]]:
    """(name, "module:attr") of every entry point in `group`, from the entry_points.txt of each
    distribution on sys.path (the format is an INI file; only our group's lines are parsed)."""
    found, seen = [], set()
    for folder in sys.path:
        try:
            names = sorted(n for n in os.listdir(folder or ".") if n.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
        for name in names:
            # "expc_arch_ssm-0.1.0.dist-info" and a stray "expc_arch_ssm.egg-info" are one distribution
            dist = re.sub(r"[-_.]+", "_", name.rsplit(".", 1)[0].split("-")[0]).lower()
            if dist in seen:  # the first on sys.path wins, as for imports
                continue
            seen.add(dist)
            try:
                text = Path(folder or ".", name, "entry_points.txt").read_text(errors="replace")
            except OSError:
                continue  # most distributions declare no entry points
            section = None
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]").strip()
                elif section == group and "=" in line and not line.startswith(("#", ";")):
                    entry, _, target = line.partition("=")
                    found.append((entry.strip(), target.split("[")[0].strip()))
    return found
