"""`python -m trainer MANIFEST [--run-dir DIR]`, as DeepSpeed's launcher starts each rank."""
import sys

from .train import main

sys.exit(main())
