"""`expc search SPEC`: the Bayesian search a spec declares (compile/search.py), run by Optuna's
TPE sampler through ask and tell, each trial a manifest like any other, run by the executor.

There is no Optuna database. A search's state is the index's record of its trials (each
manifest's source says which trials of which search it is, with the top-level arguments they
gave) and those manifests' run folders. Every proposal rebuilds an in-memory study from that
state: the earlier trials are told to it with add_trial (completed with the final value of the
metric, failed, pruned with their intermediate values, or still running), and a fresh sampler,
seeded from (the declaration's seed, the trial number), is asked once. Trial n's proposal is
therefore a pure function of (seed, n, the results of trials 0..n-1): run sequentially, the same
seed proposes the same trials, also across an interruption, and a continued search numbers on
from where it stopped.

With --parallel N or --propose K, trials are proposed while earlier ones have no result yet:
those are told as running, and the sampler's constant liar takes them for the worst result so
far, which steers it away from proposing the same point twice. Such proposals depend on which
trials were pending, not only on the seed.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from expc.compile.search import Declaration, read_declaration, recorded_trials
from expc.errors import ExpcError
from expc.project import Project, find_project

from .executor import Executor, locked, members_of, read_records
from .run import read_metadata


@dataclass
class Trial:
    number: int
    digest: str
    tla: dict
    status: str | None = None  # completed, failed, pruned, or None: not (yet) finished
    value: float | None = None  # the metric's final value, once completed
    intermediate: dict = field(default_factory=dict)  # step -> the metric's value


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for one proposal: the declaration's seed and the trial number, mixed."""
    return int.from_bytes(hashlib.sha256(f"expc-search:{seed}:{number}".encode()).digest()[:4], "big")


class Search:
    def __init__(self, spec: Path | str, project: Project | None = None, runs_dir: Path | None = None,
                 budget: int | None = None):
        self.spec = Path(spec)
        self.project = project or find_project(self.spec)
        self.runs_dir = runs_dir
        self.runs = self.project.with_runs(runs_dir).runs
        self.declaration: Declaration = read_declaration(self.spec, self.project)
        self.name = self.declaration.name
        if budget is not None and budget < 1:
            raise ExpcError("--trials must be at least 1")
        self.budget = budget or self.declaration.trials

    # --- state: the index and the run folders -------------------------------------------------

    def trials(self) -> list[Trial]:
        """Every trial of this search the index records, by number, with what its run folder says."""
        found = {number: Trial(number, digest, tla)
                 for number, (digest, tla) in recorded_trials(self.declaration, self.project).items()}
        for trial in found.values():
            self._read_result(trial)
        return [found[n] for n in sorted(found)]

    def _read_result(self, trial: Trial) -> None:
        run_dir = self.runs / trial.digest
        status = read_metadata(run_dir).get("status")
        if status == "running" and locked(run_dir):
            status = None  # training now (here or elsewhere): no result yet
        metric = self.declaration.metric
        records = read_records(run_dir) if status in ("completed", "pruned") else []
        trial.intermediate = {r["step"]: r[metric] for r in records
                              if isinstance(r.get(metric), (int, float)) and "step" in r}
        if status == "completed":
            if not trial.intermediate:
                raise ExpcError(f"trial {trial.number} ({trial.digest[:12]}) completed, but its metrics.jsonl has "
                                f"no {metric} record: the search's metric is missing (val_loss needs validation "
                                "data; loss is logged every train.log_interval steps)",
                                self.project.relative(run_dir / "metrics.jsonl"))
            trial.value = trial.intermediate[max(trial.intermediate)]
        trial.status = status if status in ("completed", "failed", "pruned") else None

    # --- asking -------------------------------------------------------------------------------

    def propose(self, number: int, earlier: list[Trial]) -> dict:
        """Trial `number`'s top-level arguments from the earlier trials' results (see the module's
        docstring: a pure function of the seed, the number and those results)."""
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = self.declaration.distributions()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=trial_seed(self.declaration.seed, number), constant_liar=True,
                                                 n_startup_trials=self.declaration.startup_trials)
        study = optuna.create_study(direction=self.declaration.direction, sampler=sampler)
        states = {"completed": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED,
                  None: TrialState.RUNNING}
        for trial in earlier:
            if trial.number >= number:
                continue
            params = {name: trial.tla.get(name) for name in distributions}
            try:
                frozen = create_trial(params=params, distributions=distributions, state=states[trial.status],
                                      value=trial.value if trial.status == "completed" else None,
                                      intermediate_values=trial.intermediate if trial.status == "pruned" else None)
            except ValueError:
                continue  # proposed from another space (the spec's space changed since): not evidence here
            study.add_trial(frozen)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            asked = study.ask(distributions)
        return {d.name: d.tidy(asked.params[d.name]) for d in self.declaration.space}

    def member_name(self, number: int, tla: dict) -> str:
        return self.declaration.member_name(number, tla)

    def write_trial(self, number: int, params: dict):
        """Compile trial `number` (the spec with `params` as its top-level arguments), write its
        manifest and record it in the index with its search and number."""
        from expc.compile import compile_spec
        from expc.compile.write import write

        try:
            (manifest,) = compile_spec(self.spec, self.project, tla=params)
        except ExpcError as err:
            import dataclasses

            raise ExpcError([dataclasses.replace(p, message=f"trial {number} ({self.member_name(number, params)}) "
                                                 f"does not compile: {p.message}\n  (narrow search.space to what "
                                                 "compiles)") for p in err.problems]) from None
        manifest.search = (self.name, number)
        write([manifest], self.project)
        manifest.path = self.project.manifests / f"{manifest.digest}.json"
        return manifest

    def next_trial(self):
        """Propose, compile and record the next trial; None once the budget is spent."""
        trials = self.trials()
        if len(trials) >= self.budget:
            return None
        number = trials[-1].number + 1 if trials else 0
        return self.write_trial(number, self.propose(number, trials))

    # --- running ------------------------------------------------------------------------------

    def members(self, trials: list[Trial], rules: list):
        out = []
        for trial in trials:
            path = self.project.manifests / f"{trial.digest}.json"
            (member,) = members_of([path], {trial.digest: self.member_name(trial.number, trial.tla)}, self.runs_dir)
            member.rules = rules
            out.append(member)
        return out

    def best(self, trials: list[Trial]) -> Trial | None:
        done = [t for t in trials if t.value is not None]
        if not done:
            return None
        sign = 1 if self.declaration.direction == "minimize" else -1
        return min(done, key=lambda t: (sign * t.value, t.number))


def search(spec, budget: int | None = None, parallel: int = 1, propose: int | None = None,
           runs_dir: Path | None = None, master_port: int = 29500, retry_failed: bool = False) -> int:
    """The command: propose only (--propose K: manifest paths on stdout, the trials on stderr),
    or run the search to its budget. Returns the exit status."""
    from click import echo

    s = Search(spec, runs_dir=runs_dir, budget=budget)
    rel = s.project.relative
    if propose is not None:
        written = 0
        for _ in range(propose):
            manifest = s.next_trial()
            if manifest is None:
                break
            written += 1
            echo(rel(manifest.path))
            echo(f"trial {manifest.search[1]}: {s.member_name(manifest.search[1], manifest.tla)}", err=True)
        if written < propose:
            echo(f"search {s.name}: the budget of {s.budget} trials is spent; {written} proposed "
                 "(--trials N raises it)", err=True)
        return 0

    def feed(executor):
        manifest = s.next_trial()
        if manifest is None:
            return None
        executor.console.print(f"trial {manifest.search[1]} proposed: {rel(manifest.path)}")
        (member,) = s.members([Trial(manifest.search[1], manifest.digest, manifest.tla)],
                              s.declaration.rules)
        return [member]

    # every recorded trial is a member: finished ones show as such (and feed the median rule),
    # proposed-but-unrun and interrupted ones run first, in trial order
    trials = s.trials()
    executor = Executor(s.members(trials, s.declaration.rules), parallel, s.name, retry_failed, master_port,
                        runs_dir, feed=feed)
    status = executor.run()
    trials = s.trials()
    best = s.best(trials)
    finished = sum(t.status is not None for t in trials)
    line = f"search {s.name}: {finished} of {s.budget} trials finished"
    if best:
        line += (f"; best: trial {best.number} ({s.member_name(best.number, best.tla)}), "
                 f"{s.declaration.metric} {best.value:.4f}, manifests/{best.digest}.json")
    executor.console.print(line)
    return 130 if executor.stop_requested else status
