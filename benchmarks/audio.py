"""``python -m benchmarks.audio [options]``: the audio guidance sweep, identical to ``crossguide bench audio``."""

import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "audio", *sys.argv[1:]]))
