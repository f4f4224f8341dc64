#!/usr/bin/env python3
"""trio-saga's command line: `python run.py --help`. With no arguments, a Maelstrom-style node
over stdin/stdout."""

import sys

from trio_saga.cli import main

if __name__ == "__main__":
    sys.exit(main())
