"""Compile: spec -> document -> manifest -> files. The build pipeline, one module per stage:

    override     (overrides.py)  `--set path=value`, `--sweep path=a,b` -> Jsonnet patches on the result
    evaluate     (evaluate.py)   spec file (+ patches) -> document, hermetic go-jsonnet
    knobs        (knobs.py)      every hidden field a declared knob, of its declared type
    split        (pipeline.py)   document -> one experiment, or the members of a sweep
    pin          (pin.py)        every file the run reads pinned by sha256 (base model, data)
    validate     (validate.py)   JSON Schema + semantic rules, every problem at once
    canonicalize (canonical.py)  rounded floats -> RFC 8785 bytes -> sha256 digest
    write        (write.py)      manifests/<digest>.json + manifests/index/<spec>.jsonl: staged as
                                 compiled, moved into place once every spec has compiled

`pipeline.py` composes them (`compile_spec`, `build`); `streamed.py` runs pin, validate and
canonicalize once per distinct top-level field for a big sweep that streams; `provenance.py`
finds the spec line that set a value, for error messages here and for `expc explain`.
`stopping.py` reads a sweep's early-stopping rules, which sit beside its members (a hidden
field) and in no manifest.

May import: the shared ground (expc.errors, expc.project, expc.schema, expc.estimate, expc.archs,
expc.pins, expc.examples) and the standard library; never torch, deepspeed, transformers or wandb (`expc build` stays a fraction
of a second), and never review, launch or the CLI, which sit above it.
"""
__all__ = ["Manifest", "build", "compile_spec"]


def __getattr__(name):
    # Loaded on first use, so a stage module imports without the whole pipeline (the bounded
    # evaluation's child process starts with evaluate.py alone).
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
