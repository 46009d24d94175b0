"""`python -m deepmad_evo …`: the same command line as `deepmad-evo` and `python run.py`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
