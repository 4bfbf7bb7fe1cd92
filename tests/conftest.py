"""Shared fixtures. `pytest --update-golden` rewrites golden files instead of comparing them."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# expc's caches (file hashes, tokenized examples) go to a folder of this session, not the user's
# ~/.cache/expc: set before expc is imported, and inherited by every expc and trainer process.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="expc-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files")


def pytest_runtest_setup(item):
    """`@pytest.mark.gpu` tests run only where torch sees a CUDA device (never in CI)."""
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


def run_cli(args, capsys):
    """`expc ARGS` in this process, as the console script runs it: (exit status, stdout, stderr)."""
    from expc.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def leaves(value, path=()):
    """Every (path, value) of a JSON value's scalars and empty containers."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path, value


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@pytest.fixture
def golden(update_golden):
    """golden(path, text): compare text with the file at path, or rewrite it with --update-golden."""
    def check(path: Path, text: str) -> None:
        if update_golden or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if not update_golden:
                pytest.fail(f"golden file {path} was missing and has been written; rerun")
        assert text == path.read_text(encoding="utf-8"), f"differs from golden {path} (--update-golden rewrites)"
    return check


@pytest.fixture
def project(tmp_path) -> Path:
    """A scratch project: a copy of the real lib/ and an empty specs/ folder."""
    shutil.copytree(ROOT / "lib", tmp_path / "lib")
    (tmp_path / "specs").mkdir()
    return tmp_path


# A scratch project with two specs, for tests of commands: one experiment that takes a top-level
# argument, and a two-member sweep of it.
ONE_SPEC = """local expc = import 'expc.libsonnet';

function(lr=3e-4)
  expc.experiment + expc.zero.stage1 + expc.presets.quick_test + {
    hardware: expc.hardware.cpu_laptop,
    model: expc.models.gpt_debug,
    data: expc.data.synthetic(),
    global_batch_size:: 4,
    micro_batch_size:: 2,
    lr:: lr,
  }
"""
TWO_SPEC = """local expc = import 'expc.libsonnet';
local one = import 'one.jsonnet';

{ a: one(1e-3), b: one(2e-3) }
"""


@pytest.fixture
def proj(project, monkeypatch):
    """The scratch project with specs/one.jsonnet and specs/two.jsonnet, as the working folder,
    its runs in their default place."""
    (project / "specs" / "one.jsonnet").write_text(ONE_SPEC)
    (project / "specs" / "two.jsonnet").write_text(TWO_SPEC)
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPC_RUNS_DIR", raising=False)
    return project
