"""``python -m benchmarks.toy [options]``: the toy guidance sweep, identical to ``crossguide bench toy``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "toy", *sys.argv[1:]]))
