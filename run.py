#!/usr/bin/env python3
"""trio-saga's command line: `python run.py --help`. With no arguments, a Maelstrom-style node
over stdin/stdout."""

import gc
import sys

# Loading the modules makes some 22,000 objects that live as long as the process and hardly
# any garbage: the cyclic collector would run forty times meanwhile to find next to nothing.
# Off while they load; freeze + unfreeze then moves them all to the oldest generation at once.
gc.disable()
try:
    from trio_saga.cli import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: still no traceback
    if sys.stderr is not None:
        print("run.py: interrupted", file=sys.stderr)
    sys.exit(130)
gc.freeze()
gc.unfreeze()
gc.enable()

if __name__ == "__main__":
    status = main()
    # The interpreter's last collections at exit would walk every object there is again (a
    # tenth of a plain run); frozen, they skip it. Nothing the commands leave to clean up
    # depends on them: files are closed, pools shut down, atexit handlers still run.
    gc.freeze()
    sys.exit(status)
