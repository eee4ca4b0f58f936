"""``python -m benchmarks.image [options]``: the image guidance sweep, identical to ``crossguide bench image``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "image", *sys.argv[1:]]))
