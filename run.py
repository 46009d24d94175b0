#!/usr/bin/env python3
"""deepmad_evo command line: `python run.py --budget 4.5G` designs a network; see --help."""

import sys

from deepmad_evo.cli import main

if __name__ == "__main__":
    sys.exit(main())
