"""`expc ls`: hardware profiles, model sizes, adapter presets and prompt templates from the lib,
the installed archs, manifests from the index, runs from runs/*/metadata.json. Rows are plain
dicts so the CLI can print a table or JSON."""
from __future__ import annotations

import json

from .project import Project, find_project


def listing(what: str, project: Project | None = None) -> list[dict]:
    project = project or find_project()
    return {"hardware": _hardware, "models": _models, "archs": _archs, "adapters": _adapters,
            "templates": _templates, "manifests": _manifests, "runs": _runs}[what](project)


def _lib_table(project: Project, file: str) -> dict:
    from expc.compile.evaluate import evaluate

    from .errors import ExpcError

    path = project.lib / file
    if not path.is_file():
        raise ExpcError(f"no {project.relative(path)} in this project")
    return evaluate(path, project).document


def _hardware(project):
    return [{"name": name, "nodes": p["nodes"], "procs_per_node": p["procs_per_node"],
             "device": p["device"], "memory_gib": p["device_memory_gib"],
             "bf16": p["bf16"], "fp16": p["fp16"], "peak_tflops": p["peak_tflops"],
             "interconnect": p["interconnect"]}
            for name, p in _lib_table(project, "hardware.libsonnet").items()]


def _models(project):
    """Smallest first: the names sort gpt_1_3b before gpt_350m."""
    from .estimate import parameter_count

    sizes = sorted(((parameter_count(m), name, m) for name, m in _lib_table(project, "models.libsonnet").items()),
                   key=lambda row: row[:2])
    # GPT's shape columns ("-" for a plug-in arch's size), and an arch column once one is there
    gpt = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    mixed = any(m["arch"] != "gpt" for _, _, m in sizes)
    return [{"name": name, "params": _human(count),
             **{k: m[k] if m["arch"] == "gpt" else "-" for k in gpt},
             **({"arch": m["arch"]} if mixed else {})}
            for count, name, m in sizes]


def _archs(project):
    from .archs import archs

    return [{"name": name, "adapters": "yes" if arch.adapters else "no",
             "from": "built in" if arch.build.startswith("trainer.") else arch.build.partition(":")[0],
             "summary": arch.summary} for name, arch in sorted(archs().items())]


def _adapters(project):
    def targets(t):
        return t if isinstance(t, str) else ", ".join(t)
    # smallest first, as the presets step up
    return [{"name": name, "method": a["method"], "r": a["r"], "alpha": a["alpha"],
             "target_modules": targets(a["target_modules"])}
            for name, a in sorted(_lib_table(project, "adapters.libsonnet").items(), key=lambda item: item[1]["r"])]


def _templates(project):
    rows = [{"name": name, "kind": t["kind"], "prompt": json.dumps(t["prompt"])[:60], "response": t["response"]}
            for name, t in _lib_table(project, "templates.libsonnet").items()]
    return rows + [{"name": "chat()", "kind": "chat", "prompt": "the base model's own chat template",
                    "response": "(assistant turn)"},
                   {"name": "custom(text)", "kind": "format", "prompt": "text up to {output}", "response": "{output}..."}]


def _manifests(project):
    from expc.compile.write import read_index

    rows = []
    for digest, entry in read_index(project)["manifests"].items():
        for source in entry["sources"]:
            member = f"[{source['member']}]" if "member" in source else ""
            rows.append({"digest": digest[:12], "spec": source["spec"] + member})
    return rows


def _runs(project):
    rows = []
    for meta in sorted(project.runs.glob("*/metadata.json")) if project.runs.is_dir() else []:
        info = json.loads(meta.read_text())
        rows.append({"digest": meta.parent.name[:12], "status": info.get("status", "?"),
                     "step": info.get("step", ""), "started": info.get("start", ""),
                     "duration_s": info.get("duration_s", "")})
    return rows


def _human(n: int) -> str:
    """Three significant digits, so sizes keep their names' precision: 2.65B, 124M, 1.31B."""
    rounded = float(f"{n:.3g}")  # round first: 999_600 is 1.00M, not 1e+03K
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if rounded >= size:
            return f"{rounded / size:.3g}{unit}"
    return str(int(n))
