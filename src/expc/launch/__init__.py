"""Launch: a manifest -> a run. Plans the exact `deepspeed` command (single node or many), then
starts it, follows it and reports.

    commands.py       manifest + options -> LaunchPlan (argv, env, run dir); pure, for --dry-run
    multinode.py      the multi-node plans: pdsh, ssh-less, OpenMPI, Slurm
    hosts.py          hostfiles and node ranks, checked
    deepspeed_env.py  the environment every rank gets (.deepspeed_env on multi-node launches)
    run.py            `expc run`: verify, decide (cached, resume, rerun), launch, follow, report
    executor.py       `expc run --parallel N`: a sweep's members at once, each an `expc run` child

May import: compile (to load and verify manifests), the shared ground, and the trainer's light
modules that define the run folder (trainer.rundir, trainer.tracking: no torch at import);
never review or the CLI.
"""
