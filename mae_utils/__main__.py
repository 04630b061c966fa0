"""``python -m mae_utils <command>``: see :mod:`mae_utils.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
