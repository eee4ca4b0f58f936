"""``python -m crossguide.benchmarks.image``: the image sweep, identical to ``crossguide bench image``."""

import sys

from crossguide.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "image", *sys.argv[1:]]))
