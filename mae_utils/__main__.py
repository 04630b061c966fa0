"""``python -m mae_utils <command>``: see :mod:`mae_utils.util.cli`."""

import sys

from .util.cli import main

if __name__ == "__main__":
    sys.exit(main())
