"""expc: an experiment compiler for large-model training.

The public API (docs/api.md): `expc.build`, `expc.load`, `expc.run`, `expc.Manifest`, `expc.Run`
and the one error type `expc.ExpcError`. Only the error type is imported here; the rest is loaded
on first use, so `import expc` reads no Jsonnet engine and no torch.
"""

from .errors import ExpcError

__version__ = "0.1.0"
__all__ = ["ExpcError", "Manifest", "Run", "build", "load", "run"]


def __getattr__(name: str):
    if name in ("build", "load", "run"):
        from . import api

        return getattr(api, name)
    if name == "Manifest":
        from .compile import Manifest

        return Manifest
    if name == "Run":
        from .launch.run import Run

        return Run
    raise AttributeError(f"module 'expc' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
