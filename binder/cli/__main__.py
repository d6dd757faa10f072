"""``python -m binder.cli``: the ``binder`` command."""

import sys

from binder.cli import main

sys.exit(main())
