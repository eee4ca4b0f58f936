"""``python -m crossguide.benchmarks.toy``: the toy sweep, identical to ``crossguide bench toy``."""

import sys

from crossguide.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "toy", *sys.argv[1:]]))
