"""`python -m ann.train`: the training command line (ann.engine.cli, whose docstring says
what it does); the engine itself is ann.engine."""

import sys

from ann.engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
