"""`expc search`'s cost per trial outside training: what happens between one trial ending and
the next one starting.

    .venv/bin/python bench/search_overhead.py [--trials 30] [--spec specs/search_lora.jsonnet]

In a temporary copy of the project (lib/, assets/, the spec), runs the search's own steps for
--trials trials, one after another, each trial's result written into its run folder as the
trainer writes it (a made-up val_loss), so nothing trains:

    state    the search's trials from manifests/index.json and their run folders (the results: tell)
    ask      an in-memory Optuna study rebuilt from them (add_trial each), a seeded TPE asked once
    compile  the spec with the proposed top-level arguments (evaluate, knobs, pin, validate, digest)
    write    the manifest file and the index entry with the trial's search and number
    admit    the executor's check of the manifest before it starts (digest, pinned files re-hashed)

Prints each step's median and the worst trial's total, the first 10 trials (random startup) and
the rest (TPE) apart, in milliseconds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from expc.compile import compile_spec  # noqa: E402
from expc.compile.write import write  # noqa: E402
from expc.launch.executor import members_of  # noqa: E402
from expc.launch.search import Search  # noqa: E402
from expc.project import Project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--spec", default="specs/search_lora.jsonnet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("lib", "assets"):
            shutil.copytree(ROOT / folder, root / folder)
        (root / "specs").mkdir()
        spec = root / "specs" / Path(args.spec).name
        shutil.copy(ROOT / args.spec, spec)
        project = Project(root)
        rows = []
        for _ in range(args.trials):
            times = {}
            start = time.perf_counter()
            search = Search(spec, project, budget=args.trials)
            trials = search.trials()
            times["state"] = time.perf_counter() - start
            number = trials[-1].number + 1 if trials else 0
            start = time.perf_counter()
            params = search.propose(number, trials)
            times["ask"] = time.perf_counter() - start
            start = time.perf_counter()
            (manifest,) = compile_spec(spec, project, tla=params)
            times["compile"] = time.perf_counter() - start
            start = time.perf_counter()
            manifest.search = (search.name, number)
            write([manifest], project)
            times["write"] = time.perf_counter() - start
            start = time.perf_counter()
            members_of([project.manifests / f"{manifest.digest}.json"], {}, None)
            times["admit"] = time.perf_counter() - start
            made_up_result(project.runs / manifest.digest, params)
            rows.append(times)
    for label, part in (("trials 0-9 (random startup)", rows[:10]), (f"trials 10-{len(rows) - 1} (TPE)", rows[10:])):
        if not part:
            continue
        medians = "  ".join(f"{k} {statistics.median(r[k] for r in part) * 1000:.0f}" for k in part[0])
        worst = max(sum(r.values()) for r in part) * 1000
        total = statistics.median(sum(r.values()) for r in part) * 1000
        print(f"{label}: median ms: {medians}  | total median {total:.0f}, worst {worst:.0f}")


def made_up_result(run_dir: Path, params: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # a made-up loss that depends on the arguments only, the same in every process
    value = 2 + int(hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:6], 16) / 2 ** 24
    (run_dir / "metadata.json").write_text(json.dumps({"status": "completed", "step": 50}))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 50, "val_loss": value}) + "\n")


if __name__ == "__main__":
    main()
