"""``folder``: your own recordings, one subfolder per class (``--data PATH``), attribute ``label``.

``PATH/dog/001.wav``, ``PATH/cat/bark.flac``, ... WAV, FLAC and OGG files are read with soundfile, mixed to
mono, resampled with torchaudio, cropped or padded (:func:`crossguide.modalities.audio.clips.to_clip`). Hidden files are
skipped; any other file, or one that cannot be decoded, is empty, silent or holds NaN or infinite samples, is an
error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from crossguide.data import ConditionalDataset, Splits, split
from crossguide.errors import UsageError
from crossguide.modalities.audio.clips import to_clip

SUFFIXES = (".wav", ".flac", ".ogg")
DEFAULTS = {"sample_rate": 16000, "duration": 1.0, "test_fraction": 0.2, "data_seed": 1234}


def read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """``[channels, samples]`` float32 audio and its sample rate; a :class:`UsageError` naming undecodable files."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [samples, channels]
    except (RuntimeError, TypeError, ValueError, EOFError) as e:  # soundfile's errors on a file it cannot decode
        raise UsageError(f"cannot read audio file {str(path)!r}: {e.__class__.__name__}: {e}") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise UsageError(f"audio file {str(path)!r} is empty")
    if not np.isfinite(data).all():  # float WAV/FLAC can hold NaN or infinity, which no clip can be made of
        raise UsageError(f"audio file {str(path)!r} holds NaN or infinite samples; remove or re-export it")
    if rate < 1:
        raise UsageError(f"audio file {str(path)!r} declares a sample rate of {rate} Hz")
    return torch.from_numpy(data.T.copy()), int(rate)


def folder_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Clips of every audio file under ``path/<class>/``; options ``sample_rate``, ``duration``, ``test_fraction``,
    ``data_seed`` (the fixed split's seed)."""
    if path is None:
        raise UsageError("the audio 'folder' dataset needs --data PATH (one subfolder of WAV/FLAC/OGG files per class)")
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"--data {str(root)!r} is not a directory")
    o = {**DEFAULTS, **options}
    rate, length = int(o["sample_rate"]), int(round(o["duration"] * o["sample_rate"]))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"--data {str(root)!r} has no class subfolders (expected PATH/<class>/<file>.wav)")
    clips, labels = [], []
    for k, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if not f.name.startswith("."))
        for f in files:
            if not f.is_file() or f.suffix.lower() not in SUFFIXES:  # a pipe or device would block the read
                raise UsageError(f"{str(f)!r} is not a {'/'.join(s[1:].upper() for s in SUFFIXES)} file; "
                                 "move it out of the dataset folder")
            audio, file_rate = read_audio(f)
            clips.append(to_clip(audio, file_rate, rate, length, name=str(f)))
            labels.append(k)
        if not files:
            raise UsageError(f"class folder {str(root / name)!r} holds no audio files")
    x = torch.stack(clips)  # [N, 1, L]
    info = {"sample_rate": rate, "length": length, "root": str(root)}
    data = ConditionalDataset("folder", x, {"label": torch.tensor(labels)}, {"label": classes}, info)
    return split(data, float(o["test_fraction"]), int(o["data_seed"]))
