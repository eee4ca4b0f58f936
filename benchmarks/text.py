"""``python -m benchmarks.text [options]``: the text guidance sweep, identical to ``crossguide bench text``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "text", *sys.argv[1:]]))
