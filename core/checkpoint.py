"""Checkpoint directories: ``config.json`` + safetensors weights + training state, written atomically.

Layout (DESIGN.md, "Checkpoint")::

    config.json            what to rebuild: modality, dataset, model and training configs
    model.safetensors      raw weights          ema.safetensors   EMA weights (used for sampling)
    training.safetensors   optimizer moments and RNG state     training.json   step, optimizer groups, stats
    manifest.json          sha256 and size of every file, to detect truncation or corruption

Nothing is unpickled on load: tensors come from safetensors, everything else from JSON. A save writes a
temporary sibling directory and renames it into place, so a failed save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from core.errors import UsageError

MANIFEST = "manifest.json"


class CheckpointError(UsageError):
    """A checkpoint directory is missing, incomplete or corrupt."""


class Checkpoint(NamedTuple):
    tensors: dict[str, dict[str, Tensor]]  # file stem -> state dict
    json: dict[str, Any]  # file stem -> parsed JSON


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(path: Path, tensors: Mapping[str, Mapping[str, Tensor]], json_files: Mapping[str, Any]) -> None:
    """Write ``{stem}.safetensors`` for each tensor dict and ``{stem}.json`` for each JSON value, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for stem, state in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, tmp / f"{stem}.safetensors")
        for stem, value in json_files.items():
            (tmp / f"{stem}.json").write_text(json.dumps(value, indent=2, sort_keys=True))
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if path.exists():
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def exists(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def verify(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; raise :class:`CheckpointError` naming the first bad one."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a directory")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has no readable {MANIFEST} ({e.__class__.__name__})") from e
    for name, entry in manifest.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is missing {name}")
        size = f.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(f"checkpoint file {str(f)!r} is truncated: {size} of {entry['bytes']} bytes")
        if _sha256(f) != entry["sha256"]:
            raise CheckpointError(f"checkpoint file {str(f)!r} is corrupt (sha256 mismatch)")
    return manifest


def load(path: Path, stems: tuple[str, ...] | None = None) -> Checkpoint:
    """Verify and read a checkpoint directory (only the ``stems`` given, default all)."""
    path = Path(path)
    manifest = verify(path)
    tensors: dict[str, dict[str, Tensor]] = {}
    json_files: dict[str, Any] = {}
    for name in manifest:
        stem, ext = name.rsplit(".", 1)
        if stems is not None and stem not in stems:
            continue
        try:
            if ext == "safetensors":
                tensors[stem] = load_file(path / name)
            elif ext == "json":
                json_files[stem] = json.loads((path / name).read_text())
        except (SafetensorError, json.JSONDecodeError, OSError) as e:
            raise CheckpointError(f"cannot read checkpoint file {str(path / name)!r}: {e}") from e
    return Checkpoint(tensors, json_files)


def read_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of a verified checkpoint."""
    return load(path, stems=("config",)).json["config"]
