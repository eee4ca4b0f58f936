"""``spoken-digits``: the words "zero" to "nine" spoken by the espeak-ng synthesizer, an SC09-like set.

SC09 (the digits of the Speech Commands set, Warden 2018) is DiffWave's class-conditional benchmark (Kong et al.
2020, Sec. 5.3). This stand-in is built locally: every clip is one digit word in one of 24 voices (English and
American English, 8 male and 4 female variants each) at a random speaking rate and pitch, converted to a clip by
:func:`crossguide.modalities.audio.clips.to_clip` and cached under :func:`crossguide.pipeline.cache_dir`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from crossguide import checkpoint as ckpt
from crossguide.data import ConditionalDataset, Splits, split
from crossguide.errors import UsageError
from crossguide.modalities.audio.clips import to_clip

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = [f"{lang}+{v}" for lang in ("en", "en-us") for v in (*(f"m{i}" for i in range(1, 9)),
                                                                *(f"f{i}" for i in range(1, 5)))]
DEFAULTS = {"sample_rate": 16000, "duration": 1.0, "per_digit": 200, "test_fraction": 0.2, "data_seed": 1234}
INSTALL = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"


def espeak() -> str:
    """The espeak-ng executable, or a :class:`UsageError` that says how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UsageError(f"the audio 'spoken-digits' dataset needs the espeak-ng speech synthesizer; {INSTALL}")
    return exe


def say(exe: str, word: str, voice: str, speed: int, pitch: int) -> tuple[torch.Tensor, int]:
    """One utterance as ``[1, samples]`` float audio and its sample rate (espeak-ng writes a WAV to stdout)."""
    cmd = [exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word]
    out = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    if out.returncode != 0 or not out.stdout:
        raise UsageError(f"espeak-ng failed for {' '.join(cmd[1:])!r}: {out.stderr.decode(errors='replace')[:200]}")
    data, rate = sf.read(io.BytesIO(out.stdout), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(rate)


def render(options: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_digit`` clips of each digit ``[N, 1, L]`` with their digit labels ``[N]``."""
    exe = espeak()
    rng = np.random.default_rng(int(options["data_seed"]))
    rate, length = int(options["sample_rate"]), int(round(options["duration"] * options["sample_rate"]))
    jobs = [(d, VOICES[rng.integers(len(VOICES))], int(rng.integers(120, 221)), int(rng.integers(20, 81)))
            for d in range(len(DIGITS)) for _ in range(int(options["per_digit"]))]

    def one(job: tuple[int, str, int, int]) -> torch.Tensor:
        d, voice, speed, pitch = job
        audio, file_rate = say(exe, DIGITS[d], voice, speed, pitch)
        return to_clip(audio, file_rate, rate, length, name=f"espeak-ng {voice} {DIGITS[d]!r}")

    with ThreadPoolExecutor(4) as pool:
        clips = list(pool.map(one, jobs))
    return torch.stack(clips), torch.tensor([d for d, *_ in jobs])


def spoken_digits_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Build (once, then from the cache) the spoken digits; options ``sample_rate``, ``duration``, ``per_digit``,
    ``test_fraction``, ``data_seed``."""
    from crossguide.pipeline import cache_dir  # the pipeline imports the registry, which imports plug-ins: import late

    if path is not None:
        raise UsageError("the audio 'spoken-digits' dataset is synthesized locally and takes no --data path")
    o = {**DEFAULTS, **options}
    key = hashlib.sha256(json.dumps({**o, "voices": VOICES}, sort_keys=True).encode()).hexdigest()[:16]
    where = cache_dir() / "datasets" / f"audio-spoken-digits-{key}"
    if ckpt.exists(where):
        saved = ckpt.load(where)
        x, digit = saved.tensors["data"]["x"], saved.tensors["data"]["digit"]
    else:
        x, digit = render(o)
        ckpt.save(where, {"data": {"x": x, "digit": digit}}, {"options": o})
    info = {"sample_rate": int(o["sample_rate"]), "length": int(x.shape[-1])}
    data = ConditionalDataset("spoken-digits", x, {"digit": digit}, {"digit": list(DIGITS)}, info)
    return split(data, float(o["test_fraction"]), int(o["data_seed"]))
