"""The docs against the code: the manifest reference is what `expc schema` prints, every relative
link resolves, the README names only real commands and options, the lib names the pages mention
exist, and every example in docs/specs.md runs and prints exactly what the page shows."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest

from expc.cli import cli, main
from expc.compile.evaluate import evaluate
from expc.project import Project
from expc.schema.reference import reference_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "specs.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
LIB_NAME = re.compile(r"\bexpc\.(\w+)\.(\w+)")
TABLE_NAME = re.compile(r"^\| `(\w+)` \|", re.M)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_manifest_reference_is_the_schemas():
    committed = (ROOT / "docs" / "manifest.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/manifest.md differs from the schema's descriptions: run `expc schema > docs/manifest.md`")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_at_files(page):
    text = page.read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in LINK.findall(text) if "://" not in t and not t.startswith("#")]
    assert targets or page.name != "README.md", "the README links nothing"
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page_id(page)} links to missing files: {missing}"


def test_readme_maps_every_doc():
    linked = {t.split("#")[0] for t in LINK.findall(README.read_text(encoding="utf-8"))}
    unlinked = sorted(f"docs/{f.name}" for f in (ROOT / "docs").iterdir() if f"docs/{f.name}" not in linked)
    assert not unlinked, f"README.md's docs map misses {unlinked}"


def readme_code_lines() -> list[str]:
    """The README's indented code lines: whole command lines."""
    return [line.strip() for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("    ")]


def readme_code() -> list[str]:
    """The README's code: indented lines and `inline code`."""
    return readme_code_lines() + re.findall(r"`([^`\n]+)`", README.read_text(encoding="utf-8"))


def test_readme_names_only_real_commands():
    named = {m for code in readme_code() for m in re.findall(r"(?<![\w./-])expc ([a-z][\w-]*)", code)}
    assert named, "the README names no expc command"
    assert named <= set(cli.commands), f"not expc commands: {sorted(named - set(cli.commands))}"
    # the tour covers the review and sweep commands, not only build and run
    assert {"build", "show", "ls", "run", "diff", "check", "affected", "explain", "schema"} <= named


def test_readme_command_lines_parse():
    """Every README line that is an expc command line is accepted by that command's parser:
    no misspelt option, no missing argument."""
    lines = [code for code in readme_code_lines() if code.startswith("expc ") and "$(" not in code]
    assert lines
    for line in lines:
        args = shlex.split(line.split(" #")[0])[1:]
        command = cli.commands.get(args[0])
        if command is None:
            pytest.fail(f"README: `{line}`: no such command")
        try:
            command.make_context(args[0], args[1:])
        except click.exceptions.Exit:
            pass  # --help
        except click.UsageError as err:
            pytest.fail(f"README: `{line}`: {err.format_message()}")


def lib_fields(tmp_path) -> dict[str, list[str]]:
    """Every field of every lib table, hidden ones included, read by go-jsonnet from the real lib."""
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "fields.jsonnet"
    spec.write_text("local expc = import 'expc.libsonnet';\n"
                    "{ [t]: std.objectFieldsAll(expc[t]) for t in std.objectFieldsAll(expc) }\n")
    shutil.copytree(ROOT / "lib", tmp_path / "lib")
    return evaluate(spec, Project(tmp_path)).document


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_lib_names_mentioned_exist(page, tmp_path):
    fields = lib_fields(tmp_path)
    text = page.read_text(encoding="utf-8")
    unknown = sorted({f"expc.{t}.{n}" for t, n in LIB_NAME.findall(text) if n not in fields.get(t, [])})
    assert not unknown, f"{page_id(page)} names what the lib does not have: {unknown}"


def ls_names(what: str, capsys, monkeypatch) -> set[str]:
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        main(["ls", what, "--json"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    return {row["name"] for row in json.loads(out)}


def guide_section(heading: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index(f"\n### {heading}\n")
    end = text.find("\n#", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("heading, what", [("Hardware profiles", "hardware"), ("Model sizes", "models")])
def test_guide_tables_list_every_lib_name(heading, what, capsys, monkeypatch):
    in_table = set(TABLE_NAME.findall(guide_section(heading)))
    assert in_table == ls_names(what, capsys, monkeypatch), (
        f"docs/specs.md's {heading} table and `expc ls {what}` disagree")


def guide_steps(text: str):
    """docs/specs.md in order: ('file', path, content) for a jsonnet block whose first line is
    `// specs/NAME.jsonnet`, ('command', line, expected output) for each `$ expc ...` of a console
    block."""
    for lang, body in FENCE.findall(text):
        if lang == "jsonnet":
            first = body.splitlines()[0]
            if first.startswith("// specs/"):
                yield "file", first[3:].strip(), body
        elif lang == "console":
            for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
                line, _, output = chunk.partition("\n")
                yield "command", line, output


def test_guide_examples_print_what_the_guide_shows(tmp_path, capsys, monkeypatch):
    """Each spec the guide writes is written, each command it shows is run, in page order, in a
    scratch project holding the real lib/ and specs/; the output must be the page's, byte for
    byte (trailing blank lines aside)."""
    shutil.copytree(ROOT / "lib", tmp_path / "lib")
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    steps = list(guide_steps(GUIDE.read_text(encoding="utf-8")))
    assert sum(kind == "command" for kind, *_ in steps) >= 10
    for kind, what, content in steps:
        if kind == "file":
            (tmp_path / what).write_text(content, encoding="utf-8")
            continue
        args = shlex.split(what)
        assert args[0] == "expc", f"docs/specs.md: only expc commands run here, not `{what}`"
        with pytest.raises(SystemExit):
            main(args[1:])
        out, err = capsys.readouterr()
        assert (out + err).rstrip("\n") == content.rstrip("\n"), (
            f"docs/specs.md: `{what}` now prints:\n{out}{err}")


def test_hydra_page_quotes_the_committed_spec():
    page = (ROOT / "docs" / "coming-from-hydra.md").read_text(encoding="utf-8")
    spec = (ROOT / "specs" / "small.jsonnet").read_text(encoding="utf-8")
    quoted = "".join(f"    {line}".rstrip() + "\n" for line in spec.splitlines())
    assert "`specs/small.jsonnet`, committed, verbatim" in page and quoted in page, (
        "docs/coming-from-hydra.md no longer quotes specs/small.jsonnet as it is")
