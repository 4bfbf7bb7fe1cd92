"""The one exception type for user mistakes, and how a location is written.

Every stage raises `ExpcError` for input a user can fix; the CLI renders it once, at its edge.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with where it is: `file:line:col` or a JSON path (or both)."""

    message: str
    location: str | None = None  # "specs/x.jsonnet:3:5" or "$.model.n_head"
    origin: str | None = None  # where the offending value was set, when known

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        return f"{head}\n  (set at {self.origin})" if self.origin else head


@dataclass
class ExpcError(Exception):
    """A user mistake. Carries one or more problems, all reported at once."""

    problems: list[Problem] = field(default_factory=list)
    context: str | None = None  # e.g. "specs/large.jsonnet" or "sweep member 'lr_1e-3'"
    # The CLI's exit status for this error; a command whose 1 means something else (`expc diff`:
    # "they differ") raises its errors with 2, through cli.errors_exit_with.
    exit_status = 1

    def __init__(self, message: str | list[Problem], location: str | None = None,
                 context: str | None = None):
        if isinstance(message, str):
            self.problems = [Problem(message, location)]
        else:
            self.problems = list(message)
        self.context = context
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        if len(self.problems) > 1:
            where = f" in {self.context}" if self.context else ""
            lines.append(f"{len(self.problems)} problems{where}:")
            lines += ["- " + p.render().replace("\n", "\n  ") for p in self.problems]
        else:
            prefix = f"{self.context}: " if self.context and not self.problems[0].location else ""
            lines.append(prefix + self.problems[0].render())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def disk_error(err: BaseException) -> ExpcError | None:
    """An OSError saying the file system refused (full, read-only, over quota, no permission)
    -> an ExpcError naming the file: the operator can fix it, so it is no bug and needs no
    traceback. None for anything else."""
    import errno

    refused = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM)
    if not isinstance(err, OSError) or err.errno not in refused:
        return None
    hint = {errno.ENOSPC: "; free some space there and run the command again",
            errno.EDQUOT: "; free some space there and run the command again",
            errno.EROFS: "; nothing can be written there until it is mounted read-write"}.get(err.errno, "")
    where = f"{err.filename}: " if err.filename else ""
    return ExpcError(f"{where}{err.strerror}{hint}")


def json_path(parts) -> str:
    """A JSON path for display: ('model', 'layers', 0) -> $.model.layers[0]."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def did_you_mean(word: str, choices) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def members_note(members: list[str], total: int) -> str:
    """Which sweep members share a problem: '' for a single experiment (member ""),
    " (in sweep member 'a')", " (in 2 of 6 sweep members: 'a', 'b')", or for many
    " (in 60 of 60 sweep members)"."""
    if members == [""]:
        return ""
    if len(members) == 1:
        return f" (in sweep member {members[0]!r})"
    named = f": {', '.join(repr(m) for m in members)}" if len(members) <= 3 and len(members) < total else ""
    return f" (in {len(members)} of {total} sweep members{named})"
