"""`python -m trainer MANIFEST [--run-dir DIR]`, as DeepSpeed's launcher starts each rank."""
import logging
import os
import sys

from .train import main

code = main()
# Leave without the interpreter's finalisation: by now every file is written and closed, W&B is
# finished and the process group destroyed, but torch's and gloo's background threads can still
# race the teardown of C++ globals ("terminate called without an active exception", exit 250,
# seen under ZeRO-3), turning a completed run into a failed launch.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
