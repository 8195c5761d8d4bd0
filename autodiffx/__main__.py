"""``python -m autodiffx``: the command line of :mod:`autodiffx.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
