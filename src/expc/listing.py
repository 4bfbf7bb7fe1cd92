"""`expc ls`: hardware profiles, model sizes, adapter presets and prompt templates from the lib,
the installed archs, manifests from the index (with the --tla / --set each was built with), runs
from <runs>/*/metadata.json (named by the index, with their final validation loss). Rows are
plain dicts so the CLI can print a table or JSON."""
from __future__ import annotations

import json

from .project import Project, find_project


def listing(what: str, project: Project | None = None) -> list[dict]:
    project = project or find_project()
    return {"hardware": _hardware, "models": _models, "archs": _archs, "adapters": _adapters,
            "templates": _templates, "manifests": _manifests, "runs": _runs, "presets": _presets,
            "optimizers": _optimizers, "schedules": _schedules, "zero": _zero, "knobs": _knobs}[what](project)


# Tables of expc.libsonnet that hold helpers, not things a spec picks by name.
_NOT_PRESETS = ("experiment", "batch", "sweep", "search", "names", "knobs")
_HELPERS = {"get", "dtype_limit", "hf_configs"}


def _presets(project):
    """Every name a spec can pick from a lib table (expc.<table>.<name>), the project's own
    tables included: whatever its lib/expc.libsonnet exports beside the built-in ones."""
    import _gojsonnet

    snippet = ("local e = import 'expc.libsonnet';\n"
               f"local skip = {json.dumps(list(_NOT_PRESETS))};\n"
               "{ [t]: { [n]: std.isFunction(e[t][n]) for n in std.objectFieldsAll(e[t]) }\n"
               "  for t in std.objectFieldsAll(e) if !std.member(skip, t) && std.isObject(e[t]) }")
    tables = json.loads(_evaluate_lib(project, snippet, _gojsonnet))
    texts = _lib_texts(project)
    rows = []
    for table, names in sorted(tables.items()):
        for name, is_function in sorted(names.items()):
            if name in _HELPERS:
                continue
            params, summary = _described(texts.get(table, ""), name)
            rows.append({"table": table, "name": f"{name}{params if is_function else ''}", "summary": summary})
    return rows


def _optimizers(project):
    return [r for r in _presets(project) if r["table"] == "optim" and _sets(project, r, "optimizer")]


def _schedules(project):
    return [r for r in _presets(project) if r["table"] == "optim" and _sets(project, r, "scheduler")]


def _zero(project):
    return [r for r in _presets(project) if r["table"] == "zero"]


def _knobs(project):
    """The knobs the lib's experiment declares (knobs.libsonnet), with their JSON Schema."""
    import _gojsonnet

    declared = json.loads(_evaluate_lib(project, "(import 'expc.libsonnet').knobs", _gojsonnet))
    rows = []
    for name, schema in sorted(declared.items()):
        rule = {k: v for k, v in schema.items() if k not in ("description", "aliases")}
        rows.append({"name": name, "schema": json.dumps(rule, separators=(", ", ": ")),
                     "aliases": ", ".join(schema.get("aliases", [])), "summary": schema.get("description", "")})
    return rows


def _sets(project, row: dict, section: str) -> bool:
    """Whether an optim preset sets deepspeed.<section> (called with its defaults)."""
    import _gojsonnet

    name = row["name"].partition("(")[0]
    snippet = (f"local x = (import 'expc.libsonnet').optim[{json.dumps(name)}];\n"
               f"local v = if std.isFunction(x) then x() else x;\n"
               f"std.objectHas(v, 'deepspeed') && std.objectHas(v.deepspeed, {json.dumps(section)})")
    try:
        return json.loads(_evaluate_lib(project, snippet, _gojsonnet))
    except RuntimeError:  # a preset that needs arguments: its name says what it is
        return False


def _evaluate_lib(project, snippet: str, engine) -> str:
    from .errors import ExpcError

    if not (project.lib / "expc.libsonnet").is_file():
        raise ExpcError(f"no {project.relative(project.lib / 'expc.libsonnet')} in this project")
    return engine.evaluate_snippet(str(project.lib / "<ls>"), snippet, jpathdir=[str(project.lib)])


def _lib_texts(project) -> dict[str, str]:
    """table -> the text of the lib file expc.libsonnet imports it from."""
    import re

    index = (project.lib / "expc.libsonnet").read_text(encoding="utf-8")
    texts = {}
    for table, file in re.findall(r"^\s*(\w+)\s*::\s*import\s*'([^']+)'", index, re.MULTILINE):
        path = project.lib / file
        if path.is_file():
            texts[table] = path.read_text(encoding="utf-8")
    return texts


def _described(text: str, name: str) -> tuple[str, str]:
    """(the parameters of `name(...)`, the comment on its line or the short one just above) in a
    lib file. A hidden definition (`name::`, the table's own) is preferred to a same-named field
    inside a value; a table entry bound to a local function takes that function's parameters."""
    import re

    def find(colons: str):
        return re.search(rf"^[ \t]*{re.escape(name)}\s*(\([^)]*\))?\s*{colons}", text, re.MULTILINE)

    match = find("::") or find(":(?!:)")
    if not match:
        return "()", ""
    params = match[1]
    if not params:
        local = re.search(rf"^\s*local\s+{re.escape(name)}\s*(\([^)]*\))\s*=", text, re.MULTILINE)
        params = local[1] if local else "()"
    params = re.sub(r"\s+", " ", params).replace("( ", "(")
    line_end = text.find("\n", match.end())
    same_line = re.search(r"//\s*(.*)$", text[match.start():line_end if line_end >= 0 else None])
    if same_line:
        return params, same_line[1].strip()
    above = []
    for line in reversed(text[:match.start()].splitlines()):
        if not line.strip().startswith("//"):
            break
        above.insert(0, line.strip().lstrip("/").strip())
    # A short comment right above is this entry's; a long one is the section's.
    return params, " ".join(above) if len(above) <= 2 else ""


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


def empty_message(what: str, project: Project) -> str | None:
    """What `expc ls` says instead of an empty table (manifests and runs can be none yet)."""
    if what == "runs":
        return f"no runs in {project.relative(project.runs)}/ (`expc run SPEC` starts one)"
    if what == "manifests":
        return f"no manifests in {project.relative(project.manifests)}/ (`expc build SPEC` writes them)"
    return None


def _manifests(project):
    from expc.compile.write import read_index

    rows, rules = [], {}
    for digest, entry in read_index(project)["manifests"].items():
        for source in entry["sources"]:
            rows.append({"digest": digest[:12], "spec": _label(source),
                         "tla": " ".join(f"{k}={_tla_text(v)}" for k, v in source.get("tla", {}).items()) or "-",
                         "set": " ".join(source.get("set", [])) or "-",
                         "early_stopping": _rules_text(project, source, rules) if "member" in source else "-"})
    return rows


def _rules_text(project, source: dict, cache: dict) -> str:
    """A sweep member's early-stopping rules, as the lib calls that declare them beside its
    sweep: read from the spec as it is now, once per spec and --tla ('?' when it no longer
    reads)."""
    from expc.compile.stopping import read_rules

    from .errors import ExpcError

    key = (source["spec"], json.dumps(source.get("tla", {}), sort_keys=True))
    if key not in cache:
        spec = project.root / source["spec"]
        try:
            cache[key] = "; ".join(rule.call() for rule in read_rules(spec, project, source.get("tla"))) or "-" \
                if spec.is_file() else "?"
        except ExpcError:
            cache[key] = "?"
    return cache[key]


def _label(source: dict) -> str:
    """spec[member], and the `expc search` trials a manifest is: 'specs/s.jsonnet (search s trial 3)'."""
    trials = "".join(f" (search {name} trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))})"
                     for name, numbers in source.get("search", {}).items())
    return source["spec"] + (f"[{source['member']}]" if "member" in source else "") + trials


def _tla_text(value) -> str:
    """A top-level argument as it is typed: a string that would not parse as JSON stays bare."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def _runs(project):
    """One row per run folder, oldest first; a run's name is its manifest's index source
    (spec[member], with the --tla / --set it was built with), '-' for a manifest the index does
    not know (built elsewhere, or its source was rebuilt since)."""
    from expc.compile.write import read_index

    sources = read_index(project)["manifests"]
    rows = []
    for meta in project.runs.glob("*/metadata.json") if project.runs.is_dir() else []:
        info = json.loads(meta.read_text())
        digest = info.get("digest", meta.parent.name)
        known = sources.get(digest, {}).get("sources", [])
        name = ", ".join(_label(s) + "".join(f" --tla {k}={_tla_text(v)}" for k, v in s.get("tla", {}).items())
                         + "".join(f" --set {x}" for x in s.get("set", [])) for s in known)
        rows.append({"digest": digest[:12], "name": name or "-", "status": info.get("status", "?"),
                     "step": info.get("step", ""), "val_loss": _final_val_loss(meta.parent / "metrics.jsonl"),
                     "started": info.get("start", ""), "duration_s": info.get("duration_s", "")})
    return sorted(rows, key=lambda r: (str(r["started"]), r["digest"]))


def _final_val_loss(metrics) -> float | str:
    """The last validation loss the run logged (a resumed run's file holds only the steps that
    count), '-' before its first evaluation."""
    if not metrics.is_file():
        return "-"
    for line in reversed(metrics.read_text(encoding="utf-8").splitlines()):
        if '"val_loss"' in line:
            return round(json.loads(line)["val_loss"], 4)
    return "-"


def _human(n: int) -> str:
    """Three significant digits, so sizes keep their names' precision: 2.65B, 124M, 1.31B."""
    rounded = float(f"{n:.3g}")  # round first: 999_600 is 1.00M, not 1e+03K
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if rounded >= size:
            return f"{rounded / size:.3g}{unit}"
    return str(int(n))
