"""``python -m crossguide.benchmarks.audio``: the audio sweep, identical to ``crossguide bench audio``."""

import sys

from crossguide.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "audio", *sys.argv[1:]]))
