"""Checkpoint directories: ``config.json`` + safetensors weights + training state, written atomically.

Layout (docs/API.md, "Checkpoints")::

    config.json            what to rebuild: modality, dataset, model and training configs
    model.safetensors      raw weights          ema.safetensors   EMA weights (used for sampling)
    training.safetensors   optimizer moments and RNG states     training.json   step, optimizer groups, stats
    manifest.json          sha256 and size of every file, to detect truncation or corruption

Nothing is unpickled on load: tensors come from safetensors, everything else from JSON.

A save survives being killed at any instant. It writes and fsyncs a temporary sibling ``.NAME.tmp-PID``, moves
the previous checkpoint aside to ``.NAME.old-PID`` and renames the new one into place. A kill between those two
renames leaves no ``NAME``; the next :func:`exists`, :func:`load` or :func:`save` of ``NAME`` then restores the
newest *complete* sibling (the new one if its manifest verifies, else the old one). Siblings left by dead
processes are removed at that point too. The same sibling naming and clean-up serve any file written with
:func:`write_atomic` (the records and manifests of :mod:`crossguide.records`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from crossguide.errors import UsageError

MANIFEST = "manifest.json"
Sibling = Literal["tmp", "old"]  # tmp: being written; old: the previous version, moved aside during a swap


class CheckpointError(UsageError):
    """A checkpoint directory is missing, incomplete or corrupt."""


class Checkpoint(NamedTuple):
    tensors: dict[str, dict[str, Tensor]]  # file stem -> state dict
    json: dict[str, Any]  # file stem -> parsed JSON


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (new names, renames), to the disk.

    Without it a power cut after a rename can leave the new name pointing at data never written. POSIX only:
    elsewhere directories cannot be opened and this is a no-op.
    """
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (a rename of an unsynced file can survive a crash empty)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _sibling(path: Path, kind: Sibling) -> Path:
    """This process's ``.NAME.tmp-PID`` or ``.NAME.old-PID`` beside ``path``: the PID says whose it is, so a
    leftover of a dead process can be told from one that a live process is still writing."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _siblings(path: Path) -> list[tuple[Sibling, int, Path]]:
    """``(kind, pid, sibling)`` for each ``.NAME.tmp-PID`` / ``.NAME.old-PID`` beside ``path``."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-(\d+)")
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no parent directory yet: nothing to recover
        return []
    matches = [(m, p) for p in entries if (m := pattern.fullmatch(p.name))]
    return [("tmp" if m[1] == "tmp" else "old", int(m[2]), p) for m, p in matches]


def _alive(pid: int) -> bool:
    """Whether another process ``pid`` runs. This process counts as dead: a sibling of its own is the leftover of
    a save that failed, as no two saves of one path run at once in one process. Off POSIX nothing is known (and
    ``os.kill`` would terminate), so every other process counts as alive and its siblings are kept."""
    if pid == os.getpid():
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # not a possible PID
        return False
    return True


def _remove_stale(path: Path) -> None:
    """Delete the ``.NAME.tmp-PID`` / ``.NAME.old-PID`` siblings of ``path`` that dead processes left; nothing
    else (a live process's sibling is still being written). Failures are ignored: this is tidying."""
    for _, pid, p in _siblings(path):
        if not _alive(pid):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()


def _mtime(path: Path) -> float:
    """When ``path`` was last written; 0 when it is gone (another process tidied it meanwhile)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _recover(path: Path) -> None:
    """Finish or undo a swap that a killed save left half done, then remove dead processes' siblings.

    With ``path`` missing, a dead process's complete ``tmp`` sibling is the checkpoint it was installing and
    its ``old`` sibling the one it replaced: the first complete one, ``tmp`` before ``old`` and newest first, is
    renamed to ``path``. A ``tmp`` whose manifest does not verify was still being written and is only removed.
    """
    if not path.exists():
        found = [(kind != "tmp", -_mtime(p), p) for kind, pid, p in _siblings(path) if not _alive(pid)]
        for *_, p in sorted(found):
            try:
                _verify(p)
                p.rename(path)
            except (CheckpointError, OSError):
                continue
            _fsync(path.parent)
            print(f"restored checkpoint {str(path)!r} from {p.name}, left by an interrupted save", file=sys.stderr)
            break
    _remove_stale(path)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace the file ``path`` by ``data`` so that a kill at any instant leaves the old or the new content:
    written and fsynced as ``.NAME.tmp-PID``, then renamed over ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = _sibling(path, "tmp")
    try:
        _write(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def check_target(path: Path) -> None:
    """Raise :class:`CheckpointError` unless a checkpoint may be saved to ``path``: it is new, an empty directory or
    a checkpoint. A save replaces the directory as a whole, so a folder of other files would be deleted."""
    path = Path(path)
    _recover(path)
    if path.exists() and not (path / MANIFEST).is_file() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"cannot save a checkpoint to {str(path)!r}: it holds other files and no checkpoint, "
                              "which a save would replace; give a new or empty directory")


def save(path: Path, tensors: Mapping[str, Mapping[str, Tensor]], json_files: Mapping[str, Any]) -> None:
    """Write ``{stem}.safetensors`` for each tensor dict and ``{stem}.json`` for each JSON value, atomically.

    A failure or an exception (Ctrl-C) leaves the previous checkpoint in place; a kill at any instant leaves the
    previous or the new one, or a sibling the next access restores (module docstring). The directory is replaced
    as a whole, so ``path`` must be new, empty, or a checkpoint: a folder of other files is a
    :class:`CheckpointError`, never deleted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path)
    tmp, old = _sibling(path, "tmp"), _sibling(path, "old")
    try:
        tmp.mkdir()
        for stem, state in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, tmp / f"{stem}.safetensors")
            _fsync(tmp / f"{stem}.safetensors")
        for stem, value in json_files.items():
            _write(tmp / f"{stem}.json", json.dumps(value, indent=2, sort_keys=True).encode())
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {name: {"sha256": sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in files}
        _write(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
        _fsync(tmp)
        if path.exists():
            path.rename(old)
        tmp.rename(path)  # between the two renames there is no `path`: _recover restores `tmp` (or `old`)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def exists(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint (after restoring one that an interrupted save left aside)."""
    path = Path(path)
    _recover(path)
    return (path / MANIFEST).is_file()


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest (``None``: nothing): it must map plain file names with an
    extension to ``{"sha256": hex digest, "bytes": size}``."""
    if not isinstance(manifest, dict):
        return f"is a JSON {type(manifest).__name__}, not an object {{file: {{sha256, bytes}}}}"
    for name, entry in manifest.items():
        if Path(name).name != name or name.startswith(".") or "." not in name:
            return f"lists {name!r}, which is not a file name with an extension in the checkpoint"
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and type(entry.get("bytes")) is int and entry["bytes"] >= 0):
            return f"entry {name!r} is not {{'sha256': hex digest, 'bytes': size}}"
    return None


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The checkpoint's manifest (file name -> sha256 and size), checked for shape but not against the files:
    e.g. the weights' sha256, which names a model (``name@`` its first 12 hex digits)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has no readable {MANIFEST} ({e.__class__.__name__})") from e
    problem = _manifest_problem(manifest)
    if problem is not None:
        raise CheckpointError(f"checkpoint {str(path)!r}: {MANIFEST} {problem}")
    return manifest


def _verify(path: Path) -> dict[str, dict[str, Any]]:
    """:func:`verify` without the recovery (which itself verifies candidates with this)."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a directory")
    manifest = read_manifest(path)
    for name, entry in manifest.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} is missing {name}")
        size = f.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(f"checkpoint file {str(f)!r} is truncated: {size} of {entry['bytes']} bytes")
        if sha256(f) != entry["sha256"]:
            raise CheckpointError(f"checkpoint file {str(f)!r} is corrupt (sha256 mismatch)")
    return manifest


def verify(path: Path) -> dict[str, dict[str, Any]]:
    """Check every file against the manifest; raise :class:`CheckpointError` naming the first bad one."""
    path = Path(path)
    _recover(path)
    return _verify(path)


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
                json_files[stem] = json.loads((path / name).read_text(encoding="utf-8"))
        except (SafetensorError, UnicodeDecodeError, json.JSONDecodeError, OSError) as e:
            raise CheckpointError(f"cannot read checkpoint file {str(path / name)!r}: {e}") from e
    if "config" in json_files and not isinstance(json_files["config"], dict):
        raise CheckpointError(f"checkpoint file {str(path / 'config.json')!r} is not a JSON object")
    return Checkpoint(tensors, json_files)


def read_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of a verified checkpoint."""
    config = load(path, stems=("config",)).json.get("config")
    if config is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no config.json")
    return config
