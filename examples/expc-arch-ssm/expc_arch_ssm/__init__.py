"""An example arch plug-in for expc: "ssm", a tiny mamba-like state-space language model.

    arch.py   what the compiler knows (expc.archs.Arch): fields, parameter count, sizes; no torch
    model.py  the torch module and its builder, imported only by the trainer
"""
