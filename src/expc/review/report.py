"""`expc report SPEC|NAME`: a sweep's results, rebuilt from its digests and their run folders.

    members    a spec compiled in memory (its members' digests), or NAME: every manifest the
               index records from a spec named NAME (specs/NAME.jsonnet, or that path itself)
    rows       per member: axis values (from its name), digest, final and best validation loss,
               steps, tokens (steps x tokens per step), training time, status
    files      reports/<name>/: results.csv, loss_curves.png (every member's training and
               validation loss), metric_vs_axes.png (final validation loss against each axis),
               replicas.csv (seed replicas: mean and spread) and report.html, one file with the
               plots embedded

The metric is the final validation loss, lower is better; members without one sort last. The
files depend on nothing but the runs: no dates, PNGs without matplotlib's version stamp, so the
same runs give the same bytes. matplotlib is imported here, inside the plotting functions only.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from expc import estimate
from expc.axes import axes_table, axis_values, replica_group, typed
from expc.errors import ExpcError
from expc.project import Project

METRIC = "final_val_loss"
SEED_AXIS = "seed"


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


@dataclass
class Report:
    name: str
    rows: list[Row]  # sorted by the metric
    axes: list[str]
    manifests: dict[str, Path]  # digest -> manifest path (where one is written)

    @property
    def best(self) -> Row | None:
        return self.rows[0] if self.rows and self.rows[0].final_val_loss is not None else None


def sweep_members(target: str, project: Project) -> tuple[str, list[tuple[str, str, dict]]]:
    """(the sweep's name, [(member, digest, manifest)]) of a spec or a sweep's name."""
    from expc.compile import canonical

    if target.endswith(".jsonnet"):
        from expc.compile import compile_spec

        if not Path(target).is_file():
            raise ExpcError(f"no such spec: {target}")
        manifests = compile_spec(target, project)
        return Path(target).stem, [(m.name or m.short, m.digest, m.data) for m in manifests]
    from expc.compile.write import read_index

    members = []
    for digest, entry in read_index(project)["manifests"].items():
        for source in entry["sources"]:
            if target in (source["spec"], Path(source["spec"]).stem):
                path = project.manifests / f"{digest}.json"
                if path.is_file():
                    members.append((source.get("member") or digest[:12], digest, canonical.load_manifest(path)[0]))
                break
    if not members:
        raise ExpcError(f"no sweep named {target!r} in the index ({project.relative(project.manifests)}/index/) "
                        "(give the spec, or the name of a spec whose manifests were built)")
    return target, sorted(members)


def collect(target: str, project: Project) -> Report:
    name, members = sweep_members(target, project)
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
        if row.train_curve or meta.get("step") is not None:
            row.steps = meta.get("step", row.train_curve[-1][0] if row.train_curve else None)
            row.tokens = row.steps * estimate.tokens_per_step(manifest) if row.steps is not None else None
        row.train_s = meta.get("duration_s")
        rows.append(row)
    rows.sort(key=lambda r: (r.final_val_loss is None, r.final_val_loss or 0.0, r.member))
    table = axes_table([r.member for r in rows]) or {}
    return Report(name, rows, list(table), {d: project.manifests / f"{d}.json" for _, d, _ in members})


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
        values = [r.final_val_loss for r in rows if r.final_val_loss is not None]
        out.append({"group": group, "seeds": len(rows), "with_loss": len(values),
                    "mean": statistics.fmean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else (0.0 if values else None),
                    "min": min(values) if values else None, "max": max(values) if values else None})
    out.sort(key=lambda g: (g["mean"] is None, g["mean"] or 0.0, g["group"]))
    return out


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
    lines.append(f"best: {best.member} ({best.digest[:12]}), final validation loss {best.final_val_loss:.4f}"
                 if best else "best: none yet (no member has a validation loss)")
    for group in replicas(report):
        lines.append(f"replicas {group['group']}: {group['with_loss']} of {group['seeds']} seeds, mean "
                     f"{_number(group['mean'])}, std {_number(group['std'])}")
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
    put("report.html", _html(report, groups, curves, versus, project))
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


def loss_curves_png(report: Report) -> bytes:
    figure = _figure(11, 4.5)
    train, val = figure.subplots(1, 2)
    colors = _colors(len(report.rows))
    for row, color in zip(report.rows, colors):
        if row.train_curve:
            train.plot(*zip(*row.train_curve), color=color, linewidth=1.2, label=row.member)
        if row.val_curve:
            val.plot(*zip(*row.val_curve), color=color, linewidth=1.2, marker="o", markersize=3, label=row.member)
    for axes, title in ((train, "training loss"), (val, "validation loss")):
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(True, alpha=0.3)
    if any(r.val_curve for r in report.rows):
        val.legend(fontsize=7, loc="upper right", ncol=1 + len(report.rows) // 12)
    figure.suptitle(f"{report.name}: loss curves ({len(report.rows)} members)")
    figure.tight_layout()
    return _png(figure)


def metric_vs_axes_png(report: Report) -> bytes | None:
    axes_names = [a for a in report.axes if a != "sample"]  # a random sample's index is no parameter
    scored = [r for r in report.rows if r.final_val_loss is not None]
    if not axes_names or not scored:
        return None
    figure = _figure(4 * len(axes_names), 3.6)
    panels = figure.subplots(1, len(axes_names), squeeze=False)[0]
    for panel, axis in zip(panels, axes_names):
        labels = [r.axes.get(axis, "") for r in scored]
        values = [typed(label) for label in labels]
        if all(isinstance(v, (int, float)) for v in values):
            panel.scatter(values, [r.final_val_loss for r in scored], color="#1f77b4")
            if min(values) > 0 and max(values) / min(values) >= 10:
                panel.set_xscale("log")
        else:
            order = sorted(set(labels))
            panel.scatter([order.index(label) for label in labels], [r.final_val_loss for r in scored],
                          color="#1f77b4")
            panel.set_xticks(range(len(order)), order, rotation=30, fontsize=8)
        panel.set_xlabel(axis)
        panel.set_ylabel("final validation loss")
        panel.grid(True, alpha=0.3)
    figure.suptitle(f"{report.name}: final validation loss against each axis")
    figure.tight_layout()
    return _png(figure)


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _html(report: Report, groups: list[dict], curves: bytes, versus: bytes | None, project: Project) -> str:
    e = html.escape
    rows = table_rows(report)
    head = "".join(f"<th>{e(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r.values()) + "</tr>\n" for r in rows)
    best = report.best
    if best:
        manifest = project.relative(report.manifests[best.digest])
        best_text = (f"<p><b>Best member:</b> {e(best.member)} (final validation loss "
                     f"{best.final_val_loss:.4f}), manifest <code>{e(manifest)}</code></p>")
    else:
        best_text = "<p><b>Best member:</b> none yet: no member has a validation loss.</p>"
    replica_html = ""
    if groups:
        columns = list(groups[0])
        replica_html = ("<h2>Seed replicas</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>\n"
                        + "".join("<tr>" + "".join(f"<td>{e(_number(g[c], 4) if isinstance(g[c], float) else str(g[c]))}"
                                                   "</td>" for c in columns) + "</tr>\n" for g in groups)
                        + "</table>")

    def image(png: bytes, alt: str) -> str:
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    plots = image(curves, "loss curves") + ("<h2>Metric against each axis</h2>" + image(versus, "metric vs axes")
                                            if versus else "")
    done = sum(r.status == "completed" for r in report.rows)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>expc report: {e(report.name)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#eee}"
        "img{max-width:100%}</style></head><body>\n"
        f"<h1>Sweep {e(report.name)}</h1>\n"
        f"<p>{len(report.rows)} members, {done} completed; sorted by the final validation loss (lower is better).</p>\n"
        f"{best_text}\n<table><tr>{head}</tr>\n{body}</table>\n{replica_html}\n"
        f"<h2>Loss curves</h2>{plots}\n</body></html>\n")


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
