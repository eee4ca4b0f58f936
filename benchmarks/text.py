"""``python -m crossguide.benchmarks.text``: the text sweep, identical to ``crossguide bench text``."""

import sys

from crossguide.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "text", *sys.argv[1:]]))
