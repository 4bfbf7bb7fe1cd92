"""A secret in the environment (a W&B key, a hub token, cloud credentials) never lands in a
manifest, the index, metadata.json, metrics, logs, W&B's offline files or anything else a run
writes: planted, launched, and every file of the project searched for it."""
import subprocess

from .conftest import BIN, PORTS, build_spec, finish, make_project, start

SECRETS = {
    "WANDB_API_KEY": "planted-wandb-key-0123456789abcdef",
    "HF_TOKEN": "hf_plantedTokenForTheTest42",
    "AWS_SECRET_ACCESS_KEY": "planted/aws/secret+key",
    "MY_SERVICE_PASSWORD": "planted-password-77",
}


def test_planted_secrets_land_nowhere(tmp_path):
    project = make_project(tmp_path / "proj")
    subprocess.run(["git", "init", "-q", str(project)], check=True)  # metadata records the project's git
    manifest = build_spec(project, "secrets", stage=1, max_steps=6)
    result = finish(start([BIN / "expc", "run", manifest, "--master-port", next(PORTS)], project, env=SECRETS))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = project / "runs" / manifest.stem
    written = [p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts]
    # the run really wrote what is searched: its metrics, metadata, logs and W&B's offline files
    assert {"metrics.jsonl", "metadata.json"} <= {p.name for p in run_dir.iterdir()}
    assert any("wandb" in p.parts for p in written) and any("logs" in p.parts for p in written)
    leaks = sorted(str(p.relative_to(project)) for p in written
                   if any(s.encode() in p.read_bytes() for s in SECRETS.values()))
    assert leaks == []
    assert not any(s in result.stdout + result.stderr for s in SECRETS.values())
