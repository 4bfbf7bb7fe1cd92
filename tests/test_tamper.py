"""Tamper: every single-value change to a committed manifest, and one changed byte of a pinned
input, is refused before anything runs, by `expc run` and by the trainer's own entry point (what
each DeepSpeed rank runs first), naming both digests (or the file and both hashes).

Every leaf of the committed manifest with the most leaves is changed in turn (a number, a
string, a bool, a null, an empty list or object), and every key renamed; each tampered file,
under the manifest's own name, goes to `expc run --dry-run` (which verifies before it plans)
and to `trainer.train.main`, both in this process. The plain `deepspeed --module trainer`
launch on a tampered manifest (both ranks refusing) is tests/trainer/test_tamper_launch.py.
"""
import json
import os
from pathlib import Path

import pytest

from expc.cli import main
from expc.compile import canonical

from .conftest import leaves

ROOT = Path(__file__).resolve().parent.parent


def object_keys(value, path=()):
    """Every (path of an object, one of its keys)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from object_keys(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from object_keys(v, (*path, i))


def changed(value):
    """Another value of the same kind: what a hand edit of one field does."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    return {"x": 1} if isinstance(value, dict) else [0]


def edited(data, path, edit):
    data = json.loads(json.dumps(data))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    edit(parent, path[-1])
    return data


def rename(parent, key):
    parent[key + "_"] = parent.pop(key)


def tamperings(data):
    """(what was done, the tampered data) for every leaf change and every key rename."""
    for path, value in leaves(data):
        yield f"{path} = {changed(value)!r}", edited(data, path, lambda p, k: p.__setitem__(k, changed(p[k])))
    for path, key in object_keys(data):
        yield f"{(*path, key)} renamed", edited(data, (*path, key), rename)


def _leaf_count(path: Path) -> int:
    return sum(1 for _ in leaves(json.loads(path.read_text())))


COMMITTED = max((p for p in (ROOT / "manifests").glob("*.json") if p.name != "index.json"), key=_leaf_count)


@pytest.fixture
def tampered(project, monkeypatch):
    """The committed manifest's name and its every tampering, written in turn to
    manifests/<name> of a scratch project (the working folder)."""
    (project / "manifests").mkdir()
    monkeypatch.chdir(project)
    target = project / "manifests" / COMMITTED.name

    def each():
        for what, data in tamperings(json.loads(COMMITTED.read_text())):
            target.write_text(canonical.pretty(data))
            yield what, canonical.digest(data)
    return f"manifests/{COMMITTED.name}", each


def refusal(name: str, actual: str) -> str:
    return (f"error: {name}: content does not match its name: the file hashes to {actual[:12]}, its name says "
            f"{Path(name).stem[:12]}. A manifest is never edited by hand: change the spec and rebuild.\n")


def test_every_single_value_change_is_refused_by_expc_run(tampered, capsys):
    name, each = tampered
    count = 0
    for what, actual in each():
        with pytest.raises(SystemExit) as exit_info:
            main(["run", "--dry-run", name])
        out, err = capsys.readouterr()
        assert (exit_info.value.code, out, err) == (1, "", refusal(name, actual)), what
        count += 1
    data = json.loads(COMMITTED.read_text())
    assert count == len(list(leaves(data))) + len(list(object_keys(data))) > 200


def test_every_single_value_change_is_refused_by_the_trainer_entry(tampered, capsys):
    from trainer.train import main as rank_main

    name, each = tampered
    for what, actual in each():
        assert rank_main([name, "--run-dir", "runs/x"]) == 1, what
        out, err = capsys.readouterr()
        assert (out, err) == ("", refusal(name, actual)), what
    assert not Path("runs").exists()


CORPUS_SPEC = """local expc = import 'expc.libsonnet';
expc.experiment + { hardware: expc.hardware.cpu_laptop, model: expc.models.gpt_debug,
                    data: { source: 'text', path: 'corpus.txt', val_fraction: 0.1 } }
"""


@pytest.fixture
def pinned(project, monkeypatch):
    """A manifest pinning a one-file text corpus; then one byte of the corpus changed, its size
    and modification time put back as they were (what `touch -r` after an edit leaves)."""
    from expc.compile import build

    corpus = project / "corpus.txt"
    corpus.write_text("the reviewed text, and only it, is what trains.\n" * 200)
    (project / "specs" / "pinned.jsonnet").write_text(CORPUS_SPEC)
    monkeypatch.chdir(project)
    (manifest,) = build([project / "specs" / "pinned.jsonnet"])
    before = os.stat(corpus)
    data = bytearray(corpus.read_bytes())
    data[100] ^= 0x01
    corpus.write_bytes(bytes(data))
    os.utime(corpus, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(corpus).st_mtime_ns == before.st_mtime_ns and os.stat(corpus).st_size == before.st_size
    now = corpus_digest_now(corpus)
    return f"manifests/{manifest.digest}.json", manifest.data["data"]["sha256"], now


def corpus_digest_now(corpus):
    """The one-file corpus digest as pins.corpus_digest forms it: "name NUL sha256 LF", hashed."""
    import hashlib

    line = f"{corpus.name}\0{hashlib.sha256(corpus.read_bytes()).hexdigest()}\n"
    return hashlib.sha256(line.encode()).hexdigest()


def test_a_changed_byte_of_a_pinned_input_is_refused(pinned, capsys):
    """Refused by `expc run` and by the check every rank makes, with the file and both hashes,
    although the file's size and mtime are what the hash cache saw at the build."""
    from trainer.train import main as rank_main

    name, pinned_hash, now = pinned
    message = (f"error: $.data.sha256: corpus.txt changed since the build (sha256 {pinned_hash[:12]} in the "
               f"manifest, {now[:12]} now): rebuild the spec to pin the new content, or restore the files\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--dry-run", name])
    assert (exit_info.value.code, *capsys.readouterr()) == (1, "", message)
    assert rank_main([name, "--run-dir", "runs/x"]) == 1
    assert capsys.readouterr() == ("", message)
