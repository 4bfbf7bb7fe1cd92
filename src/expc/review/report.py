"""`expc report SPEC|NAME`: a sweep's results, rebuilt from its digests and their run folders.

    members    a spec compiled in memory (its members' digests), or NAME: every manifest the
               index records from a spec named NAME (specs/NAME.jsonnet, or that path itself)
    rows       per member: axis values (from its name), digest, final and best validation loss,
               steps, tokens (steps x tokens per step), training time, status
    files      reports/<name>/: results.csv, loss_curves.png (every member's training and
               validation loss), metric_vs_axes.png (final validation loss against each axis),
               replicas.csv (seed replicas: mean and spread), importance.csv and importance.png
               (fANOVA parameter importance, with enough completed members and varying axes) and
               report.html, one file with the plots embedded

The metric is the final validation loss, lower is better (a search's: its declared metric and
direction, its members the trials the index records); members without one sort last. The
files depend on nothing but the runs: no dates, PNGs without matplotlib's version stamp, the
importance's random forest seeded, so the same runs give the same bytes. matplotlib and optuna
are imported here, inside the functions that need them only.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from expc import estimate
from expc.axes import axes_table, axis_values, replica_group, typed
from expc.compile.search import Declaration
from expc.errors import ExpcError
from expc.project import Project

SEED_AXIS = "seed"
# Parameter importance is computed from this many completed members and axes that vary among
# them: below that, a random forest over the axes fits noise (see docs/sweeps.md).
IMPORTANCE_MIN_MEMBERS = 8
IMPORTANCE_MIN_AXES = 2
IMPORTANCE_SEED = 0


@dataclass
class Row:
    member: str
    digest: str
    axes: dict[str, str]
    status: str
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    steps: int | None = None
    tokens: int | None = None
    train_s: float | None = None
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    value: float | None = None  # the report's metric: its last record (the final validation loss)


@dataclass
class Report:
    name: str
    rows: list[Row]  # sorted by the metric
    axes: list[str]
    manifests: dict[str, Path]  # digest -> manifest path (where one is written)
    weights: Importance | None = None  # parameter importance, computed once (importance())
    metric: str = "val_loss"  # a search's declared metric and direction; a sweep's are these
    direction: str = "minimize"
    kind: str = "sweep"  # or "search": its members are the trials the index records

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows and self.rows[0].value is not None else None

    @property
    def metric_words(self) -> str:
        return "final validation loss" if self.metric == "val_loss" else "final training loss"


def sweep_members(target: str, project: Project) -> tuple[str, list[tuple[str, str, dict]], Declaration | None]:
    """(the sweep's name, [(member, digest, manifest)], the search it declares or None) of a spec
    or a sweep's name. A spec that declares a search (`expc search`) reports its trials."""
    from expc.compile import canonical
    from expc.compile.search import declared_search

    if target.endswith(".jsonnet"):
        from expc.compile import compile_spec

        if not Path(target).is_file():
            raise ExpcError(f"no such spec: {target}")
        search = declared_search(Path(target), project)
        if search is not None:
            return search.name, trials(search, project), search
        manifests = compile_spec(target, project)
        return Path(target).stem, [(m.name or m.short, m.digest, m.data) for m in manifests], None
    from expc.compile.write import read_index

    members = []
    for digest, entry in read_index(project)["manifests"].items():
        for source in entry["sources"]:
            if target in source.get("search", {}) and (project.root / source["spec"]).is_file():
                search = declared_search(project.root / source["spec"], project)
                if search is not None and search.name == target:
                    return search.name, trials(search, project), search
            if target in (source["spec"], Path(source["spec"]).stem):
                path = project.manifests / f"{digest}.json"
                if path.is_file():
                    members.append((source.get("member") or digest[:12], digest, canonical.load_manifest(path)[0]))
                break
    if not members:
        raise ExpcError(f"no sweep named {target!r} in the index ({project.relative(project.manifests)}/index/) "
                        "(give the spec, or the name of a spec whose manifests were built)")
    return target, sorted(members), None


def trials(search: Declaration, project: Project) -> list[tuple[str, str, dict]]:
    """A search's trials as members, by trial number: every manifest the index records as one."""
    from expc.compile import canonical
    from expc.compile.search import recorded_trials

    found = {number: (search.member_name(number, tla), digest, canonical.load_manifest(path)[0])
             for number, (digest, tla) in recorded_trials(search, project).items()
             if (path := project.manifests / f"{digest}.json").is_file()}
    if not found:
        raise ExpcError(f"search {search.name} has no trials yet: `expc search {search.spec}` runs them "
                        "(`--propose K` writes the next K without running)", search.spec)
    return [found[n] for n in sorted(found)]


def collect(target: str, project: Project) -> Report:
    name, members, search = sweep_members(target, project)
    metric, direction = (search.metric, search.direction) if search else ("val_loss", "minimize")
    rows = []
    for member, digest, manifest in members:
        folder = project.runs / digest
        meta = _json(folder / "metadata.json")
        row = Row(member, digest, axis_values(member) or {}, meta.get("status") or "not run")
        for record in _records(folder / "metrics.jsonl"):
            if "loss" in record:
                row.train_curve.append((record["step"], record["loss"]))
            if "val_loss" in record:
                row.val_curve.append((record["step"], record["val_loss"]))
        if row.val_curve:
            row.final_val_loss = row.val_curve[-1][1]
            row.best_val_loss = min(v for _, v in row.val_curve)
        curve = row.val_curve if metric == "val_loss" else row.train_curve
        row.value = curve[-1][1] if curve else None
        if row.train_curve or meta.get("step") is not None:
            row.steps = meta.get("step", row.train_curve[-1][0] if row.train_curve else None)
            row.tokens = row.steps * estimate.tokens_per_step(manifest) if row.steps is not None else None
        row.train_s = meta.get("duration_s")
        rows.append(row)
    sign = 1 if direction == "minimize" else -1
    if search:  # trials in number order where their values tie (or are missing)
        rows.sort(key=lambda r: (r.value is None, sign * (r.value or 0.0), int(r.axes.get("trial", 0))))
    else:
        rows.sort(key=lambda r: (r.value is None, sign * (r.value or 0.0), r.member))
    table = axes_table([r.member for r in rows]) or {}
    if search:
        table.pop("trial", None)  # a trial's number names it; it is no parameter
    return Report(name, rows, list(table), {d: project.manifests / f"{d}.json" for _, d, _ in members},
                  metric=metric, direction=direction, kind="search" if search else "sweep")


def replicas(report: Report) -> list[dict]:
    """Members that differ only in their seed, with the mean and spread of the metric; empty
    when the sweep has no seed axis with more than one seed."""
    if SEED_AXIS not in report.axes or len({r.axes.get(SEED_AXIS) for r in report.rows}) < 2:
        return []
    groups: dict[str, list[Row]] = {}
    for row in report.rows:
        groups.setdefault(replica_group(row.member, SEED_AXIS) or "(all)", []).append(row)
    out = []
    for group, rows in groups.items():
        values = [r.value for r in rows if r.value is not None]
        out.append({"group": group, "seeds": len(rows), "with_loss": len(values),
                    "mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else (0.0 if values else None),
                    "min": min(values) if values else None, "max": max(values) if values else None})
    out.sort(key=lambda g: (g["mean"] is None, g["mean"] or 0.0, g["group"]))
    return out


@dataclass
class Importance:
    """fANOVA importance of each axis for the final validation loss, largest first (they sum to
    1); empty, with `note` saying why, when the sweep has too few members or axes for it."""
    values: dict[str, float]
    kinds: dict[str, str]  # axis -> how it was modelled: 'float, log', 'int', 'categorical (3)'
    members: int
    note: str = ""


def importance(report: Report) -> Importance:
    """Optuna's fANOVA (FanovaImportanceEvaluator, a fixed seed: the same runs give the same
    numbers) on an in-memory study with one trial per completed member: the axis values as its
    parameters, its final validation loss as the value. A numeric axis is a float or int range,
    on a log scale where its values span 10x or more (as metric_vs_axes.png draws it); any other
    is categorical. Optuna is imported here only."""
    if report.weights is None:
        report.weights = _importance(report)
    return report.weights


def _importance(report: Report) -> Importance:
    scored = [r for r in report.rows if r.status == "completed" and r.value is not None]
    varying = [a for a in report.axes if a != "sample" and len({r.axes.get(a) for r in scored}) > 1]
    if len(scored) < IMPORTANCE_MIN_MEMBERS or len(varying) < IMPORTANCE_MIN_AXES:
        return Importance({}, {}, len(scored), (
            f"it needs at least {IMPORTANCE_MIN_MEMBERS} completed members with a validation "
            f"loss and {IMPORTANCE_MIN_AXES} axes that vary among them; this sweep has {len(scored)} "
            f"such member{'s' if len(scored) != 1 else ''} and {len(varying)} such "
            f"{'axis' if len(varying) == 1 else 'axes'}"))
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions, kinds = {}, {}
    for axis in varying:
        values = [typed(r.axes[axis]) for r in scored if axis in r.axes]
        if all(isinstance(v, (int, float)) for v in values):
            low, high = min(values), max(values)
            log = low > 0 and high / low >= 10
            if all(isinstance(v, int) for v in values):
                distributions[axis], kinds[axis] = IntDistribution(low, high, log=log and low >= 1), "int"
            else:
                distributions[axis], kinds[axis] = FloatDistribution(float(low), float(high), log=log), "float"
            kinds[axis] += ", log" if distributions[axis].log else ""
        else:
            labels = sorted({r.axes[axis] for r in scored if axis in r.axes})
            distributions[axis], kinds[axis] = CategoricalDistribution(labels), f"categorical ({len(labels)})"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=report.direction)
    for r in scored:
        params = {a: (r.axes[a] if isinstance(d, CategoricalDistribution) else typed(r.axes[a]))
                  for a, d in distributions.items() if a in r.axes}
        study.add_trial(optuna.trial.create_trial(
            params={a: float(v) if isinstance(distributions[a], FloatDistribution) else v for a, v in params.items()},
            distributions={a: distributions[a] for a in params}, value=r.value))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    values = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    ordered = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    return Importance({a: round(float(v), 6) for a, v in ordered}, kinds, len(scored))


# --- text -------------------------------------------------------------------------------------

def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_rows(report: Report) -> list[dict]:
    return [{"rank": i + 1, "member": r.member, **{a: r.axes.get(a, "") for a in report.axes},
             "digest": r.digest[:12], "final_val_loss": _number(r.final_val_loss),
             "best_val_loss": _number(r.best_val_loss), "steps": _number(r.steps), "tokens": _number(r.tokens),
             "train_s": _number(r.train_s, 1), "status": r.status} for i, r in enumerate(report.rows)]


def render_text(report: Report) -> str:
    rows = table_rows(report)
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items()).rstrip()]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in widths.items()).rstrip() for r in rows]
    best = report.best
    lines.append(f"best: {best.member} ({best.digest[:12]}), {report.metric_words} {best.value:.4f}"
                 if best else f"best: none yet (no member has a {report.metric_words[6:]})")
    for group in replicas(report):
        lines.append(f"replicas {group['group']}: {group['with_loss']} of {group['seeds']} seeds, mean "
                     f"{_number(group['mean'])}, std {_number(group['std'])}")
    weights = importance(report)
    lines.append(f"parameter importance (fANOVA, {weights.members} members): "
                 + ", ".join(f"{a} {v:.3f}" for a, v in weights.values.items())
                 if weights.values else f"parameter importance: not computed: {weights.note}")
    return "\n".join(lines)


# --- files ------------------------------------------------------------------------------------

def write(report: Report, out_dir: Path, project: Project) -> list[Path]:
    """Every file under out_dir, each written whole (temp file + rename)."""
    from expc.compile.write import write_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, data: bytes | str) -> None:
        path = out_dir / name
        if isinstance(data, bytes):
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        else:
            write_atomic(path, data)
        written.append(path)

    put("results.csv", _csv(table_rows(report), full_digests={r.digest[:12]: r.digest for r in report.rows}))
    groups = replicas(report)
    if groups:
        put("replicas.csv", _csv([{k: _number(v, 6) if isinstance(v, float) else v for k, v in g.items()}
                                  for g in groups]))
    curves = loss_curves_png(report)
    put("loss_curves.png", curves)
    versus = metric_vs_axes_png(report) if report.axes else None
    if versus:
        put("metric_vs_axes.png", versus)
    weights = importance(report)
    bars = None
    if weights.values:
        put("importance.csv", _csv([{"axis": a, "importance": f"{v:.6f}", "modelled_as": weights.kinds[a]}
                                    for a, v in weights.values.items()]))
        bars = importance_png(report, weights)
        put("importance.png", bars)
    put("report.html", _html(report, groups, curves, versus, project, weights, bars))
    return written


def _csv(rows: list[dict], full_digests: dict | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if full_digests and "digest" in row:
            row = {**row, "digest": full_digests[row["digest"]]}
        writer.writerow(row)
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" entry (matplotlib's version): the bytes depend on the runs only.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# Curves drawn in colour and named in the legend: the best members by the metric; the others are
# thin grey lines, so a 100-member sweep stays readable.
LABELLED_CURVES = 10


def loss_curves_png(report: Report) -> bytes:
    labelled = report.rows[:LABELLED_CURVES]
    rest = report.rows[LABELLED_CURVES:]
    legend_rows = len(labelled) + bool(rest)
    ncol = 1 if legend_rows <= 4 else 2 if legend_rows <= 8 else 3
    legend_height = 0.17 * -(-legend_rows // ncol) + 0.1
    figure = _figure(11, 4.2 + legend_height)
    train, val = figure.subplots(1, 2)
    colors = _colors(len(labelled))
    # the others first, underneath
    for row in rest:
        for axes, curve in ((train, row.train_curve), (val, row.val_curve)):
            if curve:
                axes.plot(*zip(*curve), color="#bbbbbb", linewidth=0.7, zorder=1)
    for row, color in zip(labelled, colors):
        for axes, curve in ((train, row.train_curve), (val, row.val_curve)):
            if curve:
                # a curve of a few points gets markers (one point draws no line)
                axes.plot(*zip(*curve), color=color, linewidth=1.3, marker="o" if len(curve) <= 30 else None,
                          markersize=3, label=row.member if axes is val else None, zorder=2)
    for axes, title, curves in ((train, "training loss", [r.train_curve for r in report.rows]),
                                (val, "validation loss", [r.val_curve for r in report.rows])):
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(True, alpha=0.3)
        limits = _zoomed(curves)
        if limits:
            axes.set_ylim(limits[0], limits[1])
            axes.set_title(f"{title} (before step {limits[2]} it runs above the top)", fontsize=10)
    handles, labels = val.get_legend_handles_labels()
    if rest:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="#bbbbbb", linewidth=0.7))
        labels.append(f"{len(rest)} more (grey)")
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    shown = f"the best {len(labelled)} of {len(report.rows)} named" if rest else f"{len(report.rows)} members"
    figure.suptitle(f"{report.name}: loss curves ({shown}, by {report.metric_words})")
    figure.tight_layout(rect=(0, legend_height / (4.2 + legend_height), 1, 1))
    return _png(figure)


def _zoomed(curves: list[list[tuple[int, float]]]) -> tuple[float, float, int] | None:
    """y limits that leave out the first tenth of training, where the loss falls from its
    initial value (often 3x its final one) and flattens every difference after it; None when
    the curves are short or the whole range is readable anyway."""
    points = [(s, v) for c in curves for s, v in c if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(points) < 10:
        return None
    last = max(s for s, _ in points)
    after = max(1, last // 10)
    later = [v for s, v in points if s >= after]
    if len({s for s, _ in points if s >= after}) < 5:
        return None  # too few steps after the cut for a curve to show
    low, high, top = min(v for _, v in points), max(later, default=0.0), max(v for _, v in points)
    if not later or top - low <= 2 * (high - low):
        return None
    pad = 0.05 * (high - low or 1.0)
    return low - pad, high + pad, after


def metric_vs_axes_png(report: Report) -> bytes | None:
    axes_names = [a for a in report.axes if a != "sample"]  # a random sample's index is no parameter
    scored = [r for r in report.rows if r.value is not None]
    if not axes_names or not scored:
        return None
    figure = _figure(max(4 * len(axes_names), 6.5), 3.9)
    panels = figure.subplots(1, len(axes_names), squeeze=False)[0]
    for panel, axis in zip(panels, axes_names):
        labels = [r.axes.get(axis, "") for r in scored]
        values = [typed(label) for label in labels]
        if all(isinstance(v, (int, float)) for v in values):
            _points(panel, values, scored)
            if min(values) > 0 and max(values) / min(values) >= 10:
                panel.set_xscale("log")
            distinct = sorted(set(values))
            if len(distinct) <= 12:
                # ticks at the values the sweep set, written as in the member names (3e-4, not 10^-3.5)
                by_value = {typed(label): label for label in labels}
                panel.set_xticks(distinct, [by_value[v] for v in distinct], fontsize=8)
                panel.minorticks_off()
        else:
            order = sorted(set(labels))
            _points(panel, [order.index(label) for label in labels], scored)
            panel.set_xticks(range(len(order)), order, rotation=30 if len(order) > 4 else 0, fontsize=8)
            panel.set_xlim(-0.5, len(order) - 0.5)
        panel.set_xlabel(axis)
        panel.set_ylabel(report.metric_words)
        panel.grid(True, alpha=0.3)
    stopped = sum(r.status != "completed" for r in scored)
    figure.suptitle(f"{report.name}: {report.metric_words} against each axis"
                    + (f"\nhollow: {stopped} not completed (pruned or stopped), at their value then"
                       if stopped else ""),
                    fontsize=11)
    figure.tight_layout()
    return _png(figure)


def _points(panel, xs: list, rows: list[Row]) -> None:
    """Completed members filled; pruned or stopped ones hollow: their loss is from an earlier step."""
    for done in (True, False):
        chosen = [(x, r.value) for x, r in zip(xs, rows) if (r.status == "completed") == done]
        if chosen:
            panel.scatter(*zip(*chosen), facecolors="#1f77b4" if done else "none", edgecolors="#1f77b4",
                          alpha=0.75 if done else 1.0)


def importance_png(report: Report, weights: Importance) -> bytes:
    axes_names = list(weights.values)[::-1]  # the largest at the top
    figure = _figure(7, 1.2 + 0.45 * len(axes_names))
    panel = figure.subplots()
    values = [weights.values[a] for a in axes_names]
    panel.barh(range(len(values)), values, color="#1f77b4")
    panel.set_yticks(range(len(values)), [f"{a} ({weights.kinds[a]})" for a in axes_names])
    for y, v in enumerate(values):
        panel.text(v, y, f" {v:.3f}", va="center", fontsize=9)
    panel.set_xlim(0, max(1.0, max(values) * 1.15))
    panel.set_xlabel("importance (fANOVA, sums to 1)")
    panel.grid(True, axis="x", alpha=0.3)
    figure.suptitle(f"{report.name}: parameter importance for the {report.metric_words} ({weights.members} members)")
    figure.tight_layout()
    return _png(figure)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _html(report: Report, groups: list[dict], curves: bytes, versus: bytes | None, project: Project,
          weights: Importance, bars: bytes | None) -> str:
    e = html.escape
    rows = table_rows(report)
    head = "".join(f"<th>{e(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(_cell(v) for v in r.values()) + "</tr>\n" for r in rows)
    best = report.best
    member = "trial" if report.kind == "search" else "member"
    if best:
        manifest = project.relative(report.manifests[best.digest])
        best_text = (f"<p><b>Best {member}:</b> {e(best.member)} ({report.metric_words} "
                     f"{best.value:.4f}), manifest <code>{e(manifest)}</code></p>")
    else:
        best_text = f"<p><b>Best {member}:</b> none yet: no {member} has a {report.metric_words[6:]}.</p>"
    replica_html = ""
    if groups:
        columns = list(groups[0])
        replica_html = ("<h2>Seed replicas</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>\n"
                        + "".join("<tr>" + "".join(_cell(_number(g[c], 4) if isinstance(g[c], float) else g[c])
                                                   for c in columns) + "</tr>\n" for g in groups)
                        + "</table>")

    def image(png: bytes, alt: str) -> str:
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    plots = image(curves, "loss curves") + ("<h2>Metric against each axis</h2>" + image(versus, "metric vs axes")
                                            if versus else "")
    if weights.values:
        plots += ("<h2>Parameter importance</h2>"
                  f"<p>fANOVA (Optuna) over {weights.members} completed members: the share of the "
                  f"{report.metric_words}'s variance each axis explains.</p><table><tr><th>axis</th><th>importance</th>"
                  "<th>modelled as</th></tr>\n"
                  + "".join(f"<tr><td>{e(a)}</td>{_cell(f'{v:.3f}')}<td>{e(weights.kinds[a])}</td></tr>\n"
                            for a, v in weights.values.items())
                  + "</table>" + (image(bars, "parameter importance") if bars else ""))
    else:
        plots += f"<h2>Parameter importance</h2><p>Not computed: {e(weights.note)}.</p>"
    done = sum(r.status == "completed" for r in report.rows)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>expc report: {e(report.name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}"
        "img{max-width:100%}</style></head><body>\n"
        f"<h1>{report.kind.capitalize()} {e(report.name)}</h1>\n"
        f"<p>{len(report.rows)} {member}s, {done} completed; sorted by the {report.metric_words} "
        f"({'lower' if report.direction == 'minimize' else 'higher'} is better).</p>\n"
        f"{best_text}\n<table><tr>{head}</tr>\n{body}</table>\n{replica_html}\n"
        f"<h2>Loss curves</h2>{plots}\n</body></html>\n")


def _cell(value) -> str:
    """A table cell; numbers align right, so their digits line up down a column."""
    text = str(value)
    numeric = isinstance(typed(text), (int, float))
    return f'<td class="n">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out
