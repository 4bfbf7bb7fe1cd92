"""Review: what a reviewer reads about manifests, before anything runs.

    check.py     `expc check`: every spec compiles to the committed manifests (CI)
    diff.py      `expc diff`: semantic diff of two manifests or specs, with derived figures
    render.py    a diff as text, Markdown or JSON
    affected.py  `expc affected`: the manifests a lib or spec edit touches
    explain.py   `expc explain`: the file and line that set a manifest value
    plan.py      `expc plan`: memory, compute and cost per device, with hints that fit
    sweep.py     `expc build`'s preview of a sweep: members, axes, completed runs, device-hours left
    report.py    `expc report`: a sweep's results table, plots, CSV and HTML from its run folders

May import: compile (to rebuild specs in memory) and the shared ground; never launch, the
trainer or the CLI.
"""
