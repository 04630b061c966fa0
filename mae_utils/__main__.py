"""``python -m mae_utils <command>``: see :mod:`mae_utils.app.cli`."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
