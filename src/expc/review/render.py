"""A Diff (diff.py) -> text for a terminal, markdown for a pull-request comment, or JSON data.

Text uses click styles (red old, green new); click drops them when stdout is not a terminal.
"""
from __future__ import annotations

import json

import click

from .diff import ABSENT, Derived, Diff, Pair


def status(pair: Pair) -> str:
    if pair.old_digest is None:
        return "added"
    if pair.new_digest is None:
        return "removed"
    return "changed" if pair.differs else "unchanged"


def _value(value) -> str:
    return "(absent)" if value is ABSENT else json.dumps(value, ensure_ascii=False)


_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def _number(value, unit: str) -> str:
    if unit == "FLOPs":
        text = f"{value:.3g}"
    elif isinstance(value, int):  # counts: 124M parameters, 52.4B tokens
        text = next((f"{value / size:.3g}{suffix}" for size, suffix in _SUFFIXES if abs(value) >= size),
                    str(value))
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit and unit not in ("sequences", "tokens") else text


def _ratio(d: Derived) -> str:
    if not d.old:
        return ""
    factor = d.new / d.old
    if factor >= 100:
        return f"x{factor:,.0f}"
    return f"x{factor:.3g}" if factor >= 2 or factor <= 0.5 else f"{(factor - 1) * 100:+.1f}%"


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "-"


def _summary(diff: Diff) -> str:
    counts = {}
    for pair in diff.pairs:
        counts[status(pair)] = counts.get(status(pair), 0) + 1
    return ", ".join(f"{counts[k]} {k}" for k in ("changed", "added", "removed", "unchanged") if k in counts)


# --- text ----------------------------------------------------------------------------------------

def render_text(diff: Diff) -> str:
    if not diff.differs:
        return ""
    lines = [f"--- {diff.old_name}", f"+++ {diff.new_name}"]
    for pair in diff.pairs:
        kind = status(pair)
        if kind == "unchanged":
            continue
        if kind == "added":
            lines.append(click.style(f"+ {pair.label}  added ({_short(pair.new_digest)})", fg="green"))
            continue
        if kind == "removed":
            lines.append(click.style(f"- {pair.label}  removed ({_short(pair.old_digest)})", fg="red"))
            continue
        lines.append(click.style(f"{pair.label}  {_short(pair.old_digest)} -> {_short(pair.new_digest)}",
                                 bold=True))
        for section, changes in pair.changes.items():
            lines.append(f"  {section}")
            for c in changes:
                lines.append(f"    {c.path}: " + click.style(_value(c.old), fg="red") + " -> "
                             + click.style(_value(c.new), fg="green"))
        if pair.derived:
            lines.append("  derived")
            for d in pair.derived:
                ratio = _ratio(d)
                lines.append(f"    {d.name}: {_number(d.old, d.unit)} -> {_number(d.new, d.unit)}"
                             + (f" ({ratio})" if ratio else ""))
    lines.append(_summary(diff))
    return "\n".join(lines) + "\n"


# --- markdown ------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return "`" + _cell(text).replace("`", "'") + "`"


def render_markdown(diff: Diff) -> str:
    lines = [f"### expc diff: {_code(diff.old_name)} -> {_code(diff.new_name)}", ""]
    if not diff.differs:
        return "\n".join(lines + ["No manifest changes.", ""])
    lines += [_summary(diff), ""]
    for pair in diff.pairs:
        kind = status(pair)
        if kind == "unchanged":
            continue
        if kind in ("added", "removed"):
            digest = pair.new_digest if kind == "added" else pair.old_digest
            lines += [f"**{kind}**: {_code(pair.label)} ({_code(_short(digest))})", ""]
            continue
        lines += [f"#### {_code(pair.label)}: {_code(_short(pair.old_digest))} -> {_code(_short(pair.new_digest))}",
                  "", "| section | path | old | new |", "|---|---|---|---|"]
        for section, changes in pair.changes.items():
            for c in changes:
                lines.append(f"| {section} | {_code(c.path)} | {_code(_value(c.old))} | {_code(_value(c.new))} |")
        lines.append("")
        if pair.derived:
            lines += ["| derived | old | new | change |", "|---|---:|---:|---:|"]
            for d in pair.derived:
                lines.append(f"| {d.name} | {_number(d.old, d.unit)} | {_number(d.new, d.unit)} | {_ratio(d)} |")
            lines.append("")
    return "\n".join(lines)


# --- JSON ----------------------------------------------------------------------------------------

def diff_json(diff: Diff) -> dict:
    def change(c):
        out = {"path": c.path}
        if c.old is not ABSENT:
            out["old"] = c.old
        if c.new is not ABSENT:
            out["new"] = c.new
        return out

    return {
        "old": diff.old_name,
        "new": diff.new_name,
        "differs": diff.differs,
        "pairs": [{
            "label": p.label,
            "status": status(p),
            "old_digest": p.old_digest,
            "new_digest": p.new_digest,
            "changes": {section: [change(c) for c in cs] for section, cs in p.changes.items()},
            "derived": [{"name": d.name, "old": d.old, "new": d.new, "unit": d.unit} for d in p.derived],
        } for p in diff.pairs],
    }
