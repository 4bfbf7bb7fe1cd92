"""A plain `deepspeed --module trainer` launch (the real launcher, bypassing `expc run`) on a
manifest with one key renamed: both ranks refuse it before joining anything, each naming both
digests. tests/test_tamper.py walks every leaf and key through the same entry point in process."""
from __future__ import annotations

import json

from expc.compile import canonical

from .conftest import BIN, build_spec, finish, make_project, start

PORT = 29920  # this module's own master port (29920-29959)


def test_both_ranks_refuse_a_manifest_with_a_key_renamed(tmp_path):
    project = make_project(tmp_path / "project")
    manifest = build_spec(project, "renamed", max_steps=4)
    data = json.loads(manifest.read_text())
    data["train"]["max_step"] = data["train"].pop("max_steps")  # one key renamed, every value kept
    manifest.write_text(canonical.pretty(data))
    actual = canonical.digest(data)

    result = finish(start([BIN / "deepspeed", "--num_gpus", "2", "--master_port", PORT, "--module", "trainer",
                           f"manifests/{manifest.name}"], project, env={"DS_ACCELERATOR": "cpu"}))

    assert result.returncode != 0
    message = (f"error: manifests/{manifest.name}: content does not match its name: the file hashes to "
               f"{actual[:12]}, its name says {manifest.stem[:12]}. A manifest is never edited by hand: change "
               "the spec and rebuild.")
    assert (result.stdout + result.stderr).count(message) == 2  # rank 0 and rank 1
    assert not (project / "runs").exists()
