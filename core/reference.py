"""Reference artifacts: fixed, versioned models shipped inside a plug-in's package.

Guidance is a sampling-time method, and the field compares guidance rules on fixed checkpoints judged by fixed
feature extractors (FID's Inception network). crossguide ships such *reference artifacts* for its quick presets:
denoisers, noise classifiers, judges and any language model an evaluator scores with. Each is a checkpoint
directory (:mod:`crossguide.checkpoint`) beside a model card (``CARD.md``) in the ``reference/`` folder of the package
that provides its modality (:attr:`crossguide.registry.Modality.references`), indexed by ``references.json``:
name -> kind, the fingerprint of the config and data that made it, the sha256 and size of every file, and the
card's facts (command, seed, commit, training time, final loss, quality).

An artifact is used only where the code would otherwise train the very same thing: the caller names the
artifact and gives the fingerprint of what it would train (:func:`fingerprint`); :func:`find` returns the
verified directory when the two agree, ``None`` (saying so in one line) when they differ, and raises
:class:`crossguide.checkpoint.CheckpointError` when the files disagree with the index (a checksum mismatch or a
missing file is never a silent retrain or a silent use). ``--from-scratch`` runs inside :func:`disabled`.
The artifacts themselves are made by the project's own training code inside :func:`building`, which exports
every model the code trains or loads (:func:`offer`) into a store.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from crossguide import checkpoint as ckpt

INDEX = "references.json"
CARD = "CARD.md"

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("crossguide_references", default=True)
_build: contextvars.ContextVar[Build | None] = contextvars.ContextVar("crossguide_reference_build", default=None)
_said: set[str] = set()  # one line per artifact and process about a fingerprint that differs


def fingerprint(*tensors: Tensor, **config: Any) -> str:
    """A short sha256 of tensors' bytes and a JSON-able config: what makes a trained model the same model."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# training options that do not change what is learned: how often to checkpoint, and where
NOT_FINGERPRINTED = ("checkpoint_every", "checkpoint_minutes", "device")


def trained_by(train_config: Any) -> dict[str, Any]:
    """A training config (a dataclass) as a fingerprint sees it: without :data:`NOT_FINGERPRINTED` options."""
    return {k: v for k, v in dataclasses.asdict(train_config).items() if k not in NOT_FINGERPRINTED}


def stores() -> list[Path]:
    """Where artifacts are looked for: the folders in ``$CROSSGUIDE_REFERENCES`` (``os.pathsep``-separated; a
    user's own reference set), then the ``reference/`` folder of every registered modality's package."""
    from crossguide import registry  # the registry imports plug-ins, which import this module: import late

    extra = [Path(p) for p in os.environ.get("CROSSGUIDE_REFERENCES", "").split(os.pathsep) if p]
    return extra + [m.references for m in map(registry.get, registry.names()) if m.references is not None]


def read_index(store: Path) -> dict[str, dict[str, Any]]:
    path = Path(store) / INDEX
    if not path.exists():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ckpt.CheckpointError(f"reference index {str(path)!r} is unreadable ({e.__class__.__name__})") from e
    if not isinstance(index, dict):
        raise ckpt.CheckpointError(f"reference index {str(path)!r} is not a JSON object")
    return index


@dataclass(frozen=True)
class Artifact:
    name: str
    store: Path
    entry: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.store / self.name

    @property
    def id(self) -> str:
        """``name@`` the sha256 prefix of its weights: what records cite (the same weights, the same id)."""
        return self.entry["id"]

    def verify(self) -> None:
        """Check the artifact against the index (the manifest's sha256 covers every file through the manifest's
        own checksums) and the fingerprint its config states; raise a one-line error otherwise."""
        manifest = self.path / ckpt.MANIFEST
        rebuild = f"rebuild it with `crossguide reference build {self.name}`"
        if not manifest.is_file():
            raise ckpt.CheckpointError(f"reference {self.name!r} has no {ckpt.MANIFEST} in {str(self.path)!r}; "
                                       f"{rebuild}")
        if ckpt.sha256(manifest) != self.entry["sha256"]:
            raise ckpt.CheckpointError(f"reference {self.name!r}: {str(manifest)!r} does not match its sha256 in "
                                       f"{INDEX}; {rebuild}")
        ckpt.verify(self.path)
        stated = ckpt.read_config(self.path).get("fingerprint")
        if stated != self.entry["fingerprint"]:
            raise ckpt.CheckpointError(f"reference {self.name!r} states fingerprint {stated} in its config.json but "
                                       f"{self.entry['fingerprint']} in {INDEX}; {rebuild}")


def artifacts() -> list[Artifact]:
    """Every shipped artifact, in store and name order."""
    return [Artifact(name, store, entry) for store in stores() for name, entry in sorted(read_index(store).items())]


def get(name: str) -> Artifact:
    known = {a.name: a for a in artifacts()}
    if name not in known:
        from crossguide.errors import check_choice

        check_choice("reference artifact", name, known)
    return known[name]


def find(name: str, key: str) -> Artifact | None:
    """The verified reference artifact ``name`` if it was made from the config and data fingerprinted ``key``;
    ``None`` when references are :func:`disabled`, when there is none, or when it was made from something else
    (said in one line: the caller then trains)."""
    build = _build.get()
    if not enabled() or (build is not None and (build.names is None or name in build.names)):
        return None  # from scratch, or being rebuilt
    for artifact in artifacts():
        if artifact.name != name:
            continue
        if artifact.entry["fingerprint"] != key:
            if name not in _said:
                _said.add(name)
                print(f"reference {name} was made from another config or data (fingerprint "
                      f"{artifact.entry['fingerprint']}, requested {key}): training instead")
            return None
        artifact.verify()
        return artifact
    return None


def enabled() -> bool:
    """Whether reference artifacts may be used here (``False`` inside :func:`disabled`, as under --from-scratch)."""
    return _enabled.get()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Train everything, as ``--from-scratch`` asks: no reference artifact is used inside."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


@dataclass
class Build:
    """Where :func:`offer` exports to, and which names (``None``: all); ``made`` lists what it exported."""

    store: Path
    names: set[str] | None
    command: str
    made: list[str]


@contextlib.contextmanager
def building(store: Path, command: str, names: set[str] | None = None) -> Iterator[Build]:
    """Inside, every model the code trains or loads is exported to ``store`` through :func:`offer`, and the
    artifacts being built (``names``; ``None``: all) are trained, never found."""
    build = Build(Path(store), names, command, [])
    token = _build.set(build)
    try:
        yield build
    finally:
        _build.reset(token)


def offer(name: str, kind: str, key: str, source: Path, *, stems: tuple[str, ...], card: Mapping[str, Any]) -> None:
    """Export the checkpoint directory ``source`` (only its ``stems``) as artifact ``name`` when a
    :func:`building` is active and wants it; a no-op otherwise. ``card``: the facts its model card states
    (``seed``, ``train_s``, ``final_loss``, ``quality``: a dict of measured numbers)."""
    build = _build.get()
    if build is None or (build.names is not None and name not in build.names):
        return
    saved = ckpt.load(source, stems=stems)
    config = saved.json.get("config", {})
    json_files = {**saved.json, "config": {**config, "fingerprint": key}}
    dest = build.store / name
    ckpt.save(dest, saved.tensors, json_files)
    manifest = ckpt.read_manifest(dest)
    weights = next(manifest[f"{s}.safetensors"]["sha256"] for s in ("ema", "weights") if f"{s}.safetensors" in manifest)
    entry = {"kind": kind, "fingerprint": key, "bytes": sum(f["bytes"] for f in manifest.values()),
             "id": f"{name}@{weights[:12]}",
             "sha256": ckpt.sha256(dest / ckpt.MANIFEST), "command": f"{build.command} {name}",
             "commit": _commit(), "machine": _machine(), **dict(card)}
    _write_index(build.store, {**read_index(build.store), name: entry})
    ckpt.write_atomic(dest / CARD, card_text(name, entry).encode())
    build.made.append(name)


def _write_index(store: Path, index: Mapping[str, Any]) -> None:
    """Replace ``store``'s index so that a kill at any moment leaves the old or the new one."""
    ckpt.write_atomic(Path(store) / INDEX, (json.dumps(index, indent=2, sort_keys=True, default=str) + "\n").encode())


def update_card(store: Path, name: str, **facts: Any) -> None:
    """Add measured facts (e.g. the bench's quality table) to artifact ``name``'s index entry and card."""
    index = read_index(store)
    index[name] = {**index[name], **facts}
    _write_index(store, index)
    ckpt.write_atomic(Path(store) / name / CARD, card_text(name, index[name]).encode())


def card_text(name: str, entry: Mapping[str, Any]) -> str:
    """The model card: how the artifact was made, what it weighs, what it scores."""
    lines = [
        f"# {name}", "",
        f"A crossguide reference {entry['kind']}. Files are checked against `{INDEX}` (sha256) before use, and it "
        "is used only where the requested config and data have its fingerprint.", "",
        "| | |", "|---|---|",
        f"| command | `{entry['command']}` |",
        f"| seed | {entry.get('seed', '')} |",
        f"| commit | {entry.get('commit', '')} |",
        f"| fingerprint (config + data) | {entry['fingerprint']} |",
        f"| training time | {_number(entry.get('train_s'))} s on {entry.get('machine', '')} |",
        f"| final loss | {_number(entry.get('final_loss'))} |",
        f"| size | {entry['bytes'] / 2**20:.2f} MiB |",
        f"| sha256 (manifest) | {entry['sha256']} |",
    ]
    for title, table in (entry.get("quality") or {}).items():
        lines += ["", f"## {title}", ""]
        rows = table if isinstance(table, list) else [table]
        head = list(rows[0])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_number(r.get(k)) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    """The CPU (or GPU) the artifact was made on: training times are only comparable on one machine."""
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        return f"{names[0]}, {len(names)} cores" if names else platform.processor() or platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def remove(store: Path, name: str) -> None:
    """Drop artifact ``name`` from ``store`` (before a rebuild)."""
    index = read_index(store)
    index.pop(name, None)
    _write_index(store, index)
    shutil.rmtree(Path(store) / name, ignore_errors=True)
