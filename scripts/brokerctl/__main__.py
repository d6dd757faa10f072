"""``python3 scripts/brokerctl ARGS`` (what scripts/brokers runs) or, with scripts/ on
the path, ``python3 -m brokerctl ARGS``."""

import sys
from pathlib import Path

if not __package__:
    # Run as a directory: import the package from scripts/, its modules not top-level.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from brokerctl.cli import main

sys.exit(main(sys.argv[1:]))
