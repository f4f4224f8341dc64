#!/usr/bin/env python3
"""trio-saga's command line: `python run.py --help`. With no arguments, a Maelstrom-style node
over stdin/stdout."""

import sys

try:
    from trio_saga.cli import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: still no traceback
    if sys.stderr is not None:
        print("run.py: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
