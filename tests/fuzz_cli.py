"""Fuzz the ``crossguide`` command line as a hostile user would: each bad input in a fresh process with a time
limit, tallied by class of failure (issue 17's quality bar: >= 98% clean, 0 tracebacks, 0 hangs, 0 silent
acceptances).

    nice -n 19 python tests/fuzz_cli.py [--jobs 2] [--only CLASS ...] [--log results.jsonl]

Not a pytest module (pytest collects ``test_*.py`` only): it takes about half an hour on 2 CPU cores, mostly
Python start-up. ``tests/test_fuzz.py`` is the in-process, property-based counterpart that runs in CI.

An input is *clean* when it exits non-zero with exactly one stderr line starting ``error:`` (progress bars
aside; not an ``internal error``) and leaves the user's files as they were; a *correct acceptance* is a valid
edge case (the largest seed, ``|w| = 1000``) that exits 0. Run as root, the permission cases drop
CAP_DAC_OVERRIDE (``setpriv``) so that a mode-000 folder is unreadable to the command as it is to a user.
"""

from __future__ import annotations

import argparse
import builtins
import hashlib
import json
import math
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save as save_tensors

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^(?!error: ).+?:\s+\d+%\|")  # a tqdm bar line ("cfg, w=2, ddim:  40%|...")
OUTCOMES = ("clean", "accepted", "traceback", "hang", "silent", "other")
HEADERS = ("clean one-line errors", "correct acceptances", "tracebacks", "hangs", "silent acceptances", "other")
LOCKED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
          "--inh-caps=-dac_override,-dac_read_search"] if os.geteuid() == 0 and shutil.which("setpriv") else []
USER_FILE = "the user's own file\n"


@dataclass
class Case:
    kind: str  # the class of failure
    argv: list[str]
    accept: bool = False  # a valid edge case: exit 0 is right
    locked: bool = False  # permission bits apply (root without CAP_DAC_OVERRIDE)
    intact: list[Path] = field(default_factory=list)  # files the run must leave as they were


def float_wav(values: list[float], rate: int = 8000) -> bytes:
    """A mono 32-bit float WAV holding exactly ``values`` (NaN and infinity included)."""
    data = struct.pack(f"<{len(values)}f", *values)
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    return (b"RIFF" + struct.pack("<I", 20 + len(fmt) + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", len(data)) + data)


def png(colour: tuple[int, int, int]) -> bytes:
    """A valid 4x4 RGB PNG, written without PIL."""
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    raw = b"".join(b"\0" + bytes(colour) * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def resign(ck: Path) -> None:
    """Rewrite a checkpoint's manifest so that edited files verify: only their content is left to catch."""
    manifest = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
                for p in sorted(ck.iterdir()) if p.name != "manifest.json"}
    (ck / "manifest.json").write_text(json.dumps(manifest))


class Workspace:
    """Fixtures under one temporary folder: a toy smoke checkpoint, the user's file, data folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.ck = root / "ck"
        self.file = self.put("user.txt", USER_FILE)

    def path(self, name: str) -> Path:
        self.count += 1
        return self.root / f"{self.count:03d}-{name}"

    def out(self) -> str:
        return str(self.path("out"))

    def put(self, name: str, data: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def checkpoint(self, name: str, config: Callable[[dict], object] | None = None, *, raw: bytes | None = None,
                   files: dict[str, bytes | None] | None = None, manifest: object = None, sign: bool = True) -> str:
        """A copy of the checkpoint with ``config`` applied to config.json (or ``raw`` bytes), ``files`` replaced
        (``None``: deleted), then re-signed (``sign``) or given ``manifest``."""
        ck = self.path(name)
        shutil.copytree(self.ck, ck)
        if config is not None or raw is not None:
            data = raw if raw is not None else json.dumps(config(json.loads((ck / "config.json").read_text())))
            (ck / "config.json").write_bytes(data if isinstance(data, bytes) else data.encode())
        for fname, content in (files or {}).items():
            if content is None:
                (ck / fname).unlink()
            else:
                (ck / fname).write_bytes(content)
        if sign:
            resign(ck)
        if manifest is not None:
            (ck / "manifest.json").write_text(json.dumps(manifest))
        return str(ck)

    def classes(self, name: str, files: dict[str, dict[str, bytes | str | None]]) -> str:
        """A dataset folder: class -> file name -> content (``None``: a subfolder; "<fifo>": a named pipe)."""
        root = self.path(name)
        for label, entries in files.items():
            (root / label).mkdir(parents=True)
            for fname, content in entries.items():
                target = root / label / fname
                if content is None:
                    target.mkdir()
                elif content == "<fifo>":
                    os.mkfifo(target)
                else:
                    target.write_bytes(content.encode() if isinstance(content, str) else content)
        root.mkdir(exist_ok=True)
        return str(root)


def edit(path: tuple[str, ...], value: object) -> Callable[[dict], dict]:
    """A config edit: set (or with ``...`` delete) the entry at ``path``."""
    def apply(config: dict) -> dict:
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        if value is ...:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        return config
    return apply


def cases(w: Workspace) -> list[Case]:
    ck, out, f = str(w.ck), w.out, str(w.file)
    sample = ["sample", "--checkpoint", ck]
    train_toy = ["train", "toy", "--preset", "smoke"]
    bench_toy = ["bench", "toy", "--preset", "smoke", "--checkpoint", ck]
    study = ["study", "--preset", "smoke", "--modalities", "toy"]
    out_list: list[Case] = []

    def add(kind: str, argv: list[str], **kw: object) -> None:
        out_list.append(Case(kind, argv, **kw))

    # --- numeric limits: every number option, out of range or not a number -----------------------------------
    for v in ["0", "-1", "100001", str(10**30), "abc", "", "1.5", "nan", "1e3", "--"]:
        add("numeric limits", [*sample, f"--n={v}", "--out", out()])
    for v in ["-1", str(2**63), str(2**64), str(10**40), "x", "1.0", ""]:
        add("numeric limits", [*sample, f"--seed={v}", "--out", out()])
    for v in ["0", "-3", "1001", str(10**9), "2.5", ""]:
        add("numeric limits", [*sample, f"--steps={v}", "--out", out()])
    for v in ["1e30", "nan", "inf", "-inf", "1001", "-1e4", "", "abc", "1,2"]:
        add("numeric limits", [*sample, f"--w={v}", "--out", out()])
    for v in ["0", "-1", str(10**9), "x"]:
        add("numeric limits", [*train_toy, f"--batch-size={v}", "--out", out()])
    for v in ["0", str(10**12), "1e3"]:
        add("numeric limits", [*train_toy, f"--steps={v}", "--out", out()])
    for v in ["0", "-1", "inf", "nan", "10", "x"]:
        add("numeric limits", [*train_toy, f"--lr={v}", "--out", out()])
    for opt, vals in (("--p-uncond", ["-0.5", "1.5", "nan", "inf"]), ("--p-attr", ["-0.1", "2", "nan"])):
        for v in vals:
            add("numeric limits", [*train_toy, f"{opt}={v}", "--out", out()])
    for v in ["0", "-1", "1000", "x"]:
        add("numeric limits", [*study, f"--seeds={v}", "--out", out()])
    for v in ["", ",", "1,,2", "nan", "1e9", "1,1", "abc", "-inf,0"]:
        add("numeric limits", [*bench_toy, f"--w={v}", "--out", out()])
    for v in ["1", "1,2,3", "5,1", "nan,1", "-1,2", "0,inf"]:
        add("numeric limits", [*sample, f"--interval={v}", "--out", out()])
    for v in ["linear:0,1,2", "linear:5,1", "linear:nan,1", "cosine:a,b"]:
        add("numeric limits", [*sample, f"--schedule={v}", "--out", out()])
    for v in ["eta=nan", "r=-1", "momentum=2", "eta=x", "=1", "eta", "eta=1,eta=2"]:
        add("numeric limits", [*sample, "--rule", "apg", f"--rule-args={v}", "--out", out()])
    add("numeric limits", [*sample, "--n", "1", "--seed", str(2**63 - 1), "--w", "1000", "--cond", "cluster=north",
                           "--out", out()], accept=True)
    add("numeric limits", [*sample, "--n", "1", "--w", "-1000", "--steps", "1", "--out", out()], accept=True)

    # --- device ------------------------------------------------------------------------------------------------
    for v in ["bogus", "cuda", "cuda:0", "cuda:1", "CPU", "cpu:0", "mps", "", "cuda:-1", "cuda:x", " cpu"]:
        add("device", [*train_toy, f"--device={v}", "--out", out()])
    add("device", [*train_toy, "--device", "cpu", "--steps", "5", "--out", out()], accept=True)
    add("device", [*train_toy, "--device", "auto", "--steps", "5", "--out", out()], accept=True)

    # --- conditions ----------------------------------------------------------------------------------------------
    for v in ["cluster=north,cluster=east", "cluster=north,cluster=north", "cluster", "=north", "colour=red",
              "cluster=up", ",", "cluster=north=x", "side=outer,,side=inner"]:
        add("conditions", [*sample, f"--cond={v}", "--out", out()])
    for cond, comp, extra in [("cluster=north", "cluster=1,cluster=2", []),
                              ("cluster=north", "cluster=1", ["--w", "2"]), ("cluster=north", "side=1", []),
                              ("", "cluster=1", []),
                              ("cluster=north", "cluster=x", []), ("cluster=north", "cluster=nan", []),
                              ("cluster=north", "cluster=1e9", []), ("cluster=north", "nope=1", []),
                              ("cluster=north", ",", [])]:
        add("conditions", [*sample, f"--cond={cond}", f"--compose={comp}", *extra, "--out", out()])
    for v in ["side=inner,side=outer", "side=up", ","]:
        add("conditions", [*sample, "--cond", "cluster=north", f"--negative={v}", "--out", out()])
    for v in ["", ",", "toy,toy", "smell"]:
        add("conditions", ["study", "--preset", "smoke", f"--modalities={v}", "--out", out()])
    for v in ["", "cfg,cfg", "nope"]:
        add("conditions", [*study, f"--rules={v}", "--out", out()])
    add("conditions", ["reference", "build", "--modalities=", "--preset", "smoke"])
    add("conditions", [*sample, "--cond", "cluster=north,side=outer", "--compose", "cluster=2,side=0.5", "--n", "4",
                       "--out", out()], accept=True)
    add("conditions", [*sample, "--cond", "", "--n", "4", "--steps", "5", "--out", out()], accept=True)

    # --- output locations -------------------------------------------------------------------------------------------
    for head in (train_toy, [*sample, "--n", "2"], [*bench_toy, "--w", "0"], study):
        add("output locations", [*head, "--out", f], intact=[w.file])
        add("output locations", [*head, "--out", f"{f}/sub"], intact=[w.file])
    read_only = w.path("read-only")
    read_only.mkdir()
    read_only.chmod(0o555)
    for head in (train_toy, [*sample, "--n", "2"], [*bench_toy, "--w", "0"], study):
        add("output locations", [*head, "--out", str(read_only / "sub")], locked=bool(LOCKED))
    add("output locations", [*sample, "--n", "2", "--out", str(read_only)], locked=bool(LOCKED))
    mine = w.put(f"{w.path('mine').name}/notes.txt", USER_FILE)
    add("output locations", [*train_toy, "--out", str(mine.parent)], intact=[mine])
    model_file = w.put(f"{w.path('bench').name}/model", USER_FILE)
    add("output locations", ["bench", "toy", "--preset", "smoke", "--w", "0", "--out", str(model_file.parent)],
        intact=[model_file])
    add("output locations", [*train_toy, "--out", ""])
    add("output locations", [*sample, "--out", ""])
    summary = w.put(f"{w.path('summary').name}/summary.json", "{not json")
    add("output locations", [*bench_toy, "--w", "0", "--out", str(summary.parent)], intact=[summary])
    for text in ("{broken", "[1, 2]"):
        meta = w.put(f"{w.path('study').name}/study.json", text)
        add("output locations", [*study, "--out", str(meta.parent)], intact=[meta])
    records_dir = w.path("records")
    (records_dir / "records.jsonl").mkdir(parents=True)
    add("output locations", [*bench_toy, "--w", "0", "--out", str(records_dir)])

    # --- data encodings: the three user-data loaders ------------------------------------------------------------
    good = ['{"text": "the black cat sat", "colour": "black"}', '{"text": "a white cat ran", "colour": "white"}']
    jsonl_files = {
        "latin-1": ('{"text": "café noir", "colour": "black"}\n' + good[1]).encode("latin-1"),
        "utf-16 with BOM": "\n".join(good).encode("utf-16"),
        "utf-16-le": "\n".join(good).encode("utf-16-le"),
        "utf-32": "\n".join(good).encode("utf-32"),
        "escaped lone surrogate": ('{"text": "a \\ud800 b", "colour": "black"}\n' + good[1]).encode(),
        "raw surrogate bytes": b'{"text": "a \xed\xa0\x80 b", "colour": "black"}\n' + good[1].encode(),
        "invalid json": (good[0] + "\n{not json\n" + good[1]).encode(),
        "duplicate key": ('{"text": "a", "text": "b", "colour": "black"}\n' + good[1]).encode(),
        "empty line": (good[0] + "\n\n" + good[1]).encode(),
        "not an object": (good[0] + "\n[1, 2]\n" + good[1]).encode(),
        "deep nesting": (good[0] + "\n" + "[" * 100000 + "]" * 100000 + "\n" + good[1]).encode(),
        "5000-digit number": ('{"text": "a", "colour": ' + "9" * 5000 + "}\n" + good[1]).encode(),
        "number value": ('{"text": "a", "colour": 3}\n' + good[1]).encode(),
        "one line": good[0].encode(),
        "random bytes": bytes(range(256)) * 4,
        "empty file": b"",
        "comma in field name": b'{"text": "a", "col,our": "black"}\n{"text": "b", "col,our": "white"}',
        "NUL byte": (good[0] + "\n" + good[1][:10] + "\0" + good[1][10:]).encode(),
        "missing field": (good[0] + '\n{"text": "b"}').encode(),
    }
    text_train = ["train", "text", "--dataset", "jsonl", "--preset", "smoke"]
    for name, data in jsonl_files.items():
        path = w.put(f"{w.path('jsonl').name}/{name.replace(' ', '-')}.jsonl", data)
        add("data encodings", [*text_train, "--data", str(path), "--out", out()])
    add("data encodings", [*text_train, "--data", str(w.root), "--out", out()])
    add("data encodings", [*text_train, "--data", str(w.root / "nowhere.jsonl"), "--out", out()])

    tone = [math.sin(i / 3.0) * 0.5 for i in range(800)]
    ok = {"good.wav": float_wav(tone)}
    audio_sets: dict[str, dict[str, dict[str, bytes | str | None]]] = {
        "nan": {"a": {**ok, "bad.wav": float_wav([math.nan] * 800)}, "b": ok},
        "inf": {"a": {**ok, "bad.wav": float_wav([0.0] * 799 + [math.inf])}, "b": ok},
        "empty": {"a": {**ok, "bad.wav": float_wav([])}, "b": ok},
        "silent": {"a": {**ok, "bad.wav": float_wav([0.0] * 800)}, "b": ok},
        "random bytes": {"a": {**ok, "bad.wav": bytes(range(256))}, "b": ok},
        "truncated header": {"a": {**ok, "bad.wav": float_wav(tone)[:30]}, "b": ok},
        "text file": {"a": {**ok, "notes.txt": "hello"}, "b": ok},
        "subfolder": {"a": {**ok, "more": None}, "b": ok},
        "fifo": {"a": {**ok, "pipe.wav": "<fifo>"}, "b": ok},
        "empty class": {"a": ok, "b": {}},
        "no classes": {},
    }
    img = {"good.png": png((200, 10, 10)), "also.png": png((10, 200, 10))}
    image_sets: dict[str, dict[str, dict[str, bytes | str | None]]] = {
        "random bytes": {"a": {**img, "bad.png": bytes(range(256))}, "b": img},
        "truncated png": {"a": {**img, "bad.png": png((1, 2, 3))[:40]}, "b": img},
        "jpeg junk": {"a": {**img, "bad.jpg": b"\xff\xd8\xff\xe0 not really a jpeg"}, "b": img},
        "zero bytes": {"a": {**img, "bad.png": b""}, "b": img},
        "text as png": {"a": {**img, "bad.png": "hello"}, "b": img},
        "empty class": {"a": img, "b": {}},
        "no classes": {},
        "one image": {"a": {"good.png": png((1, 1, 1))}},
    }
    # each folder loader: the bad layouts, a file or nothing as --data, a class folder or file it may not read
    for modality, sets, good_files, unreadable in (("audio", audio_sets, ok, [("b",)]),
                                                   ("image", image_sets, img, [("b",), ("b", "good.png")])):
        head = ["train", modality, "--dataset", "folder", "--preset", "smoke"]
        for name, layout in sets.items():
            add("data encodings", [*head, "--data", w.classes(f"{modality}-{name.replace(' ', '-')}", layout),
                                   "--out", out()])
        add("data encodings", [*head, "--data", f, "--out", out()])
        add("data encodings", [*head, "--data", str(w.root / "nowhere"), "--out", out()])
        for parts in unreadable:
            root = w.classes(f"{modality}-unreadable", {"a": good_files, "b": good_files})
            Path(root, *parts).chmod(0)
            add("data encodings", [*head, "--data", root, "--out", out()], locked=bool(LOCKED))

    # --- checkpoint content ------------------------------------------------------------------------------------
    edits: dict[str, Callable[[dict], object]] = {
        "config is a list": lambda c: [c], "config is {}": lambda c: {},
        "no model": edit(("model",), ...), "no modality": edit(("modality",), ...),
        "hidden is a string": edit(("model", "hidden"), "x"), "hidden is 3": edit(("model", "hidden"), 3),
        "depth is -1": edit(("model", "depth"), -1), "prediction unknown": edit(("model", "prediction"), "z"),
        "T is a string": edit(("schedule", "T"), "1000"), "T is 10**9": edit(("schedule", "T"), 10**9),
        "schedule unknown": edit(("schedule", "name"), "zigzag"), "attributes a list": edit(("attributes",), ["a"]),
        "attribute values a string": edit(("attributes", "cluster"), "north"),
        "attribute values empty": edit(("attributes", "side"), []), "modality unknown": edit(("modality",), "smell"),
        "modality a number": edit(("modality",), 7), "preset a number": edit(("preset",), 3),
        "data_info a list": edit(("data_info",), [1]), "train a string": edit(("train",), "fast"),
    }
    for name, change in edits.items():
        add("checkpoint content", ["sample", "--checkpoint", w.checkpoint(name.replace(" ", "-"), change), "--n", "2",
                                   "--out", out()])
    raw = {"config not JSON": b"{model", "config in latin-1": '{"modality": "toy", "é": 1}'.encode("latin-1")}
    for name, data in raw.items():
        add("checkpoint content", ["sample", "--checkpoint", w.checkpoint(name.replace(" ", "-"), raw=data),
                                   "--out", out()])
    real = json.loads((w.ck / "manifest.json").read_text())
    manifests = {"manifest a list": [real], "manifest {}": {},
                 "manifest omits ema": {k: v for k, v in real.items() if k != "ema.safetensors"},
                 "manifest wrong sha": {**real, "ema.safetensors": {**real["ema.safetensors"], "sha256": "0" * 64}},
                 "manifest bytes a string": {**real, "config.json": {**real["config.json"], "bytes": "12"}},
                 "manifest names ../x": {**real, "../x.json": real["config.json"]}}
    for name, manifest in manifests.items():
        add("checkpoint content", ["sample", "--checkpoint", w.checkpoint(name.replace(" ", "-"), manifest=manifest,
                                                                          sign=False), "--out", out()])
    ema = (w.ck / "ema.safetensors").read_bytes()
    other = save_tensors({"net.0.weight": torch.zeros(3, 3)})  # weights of another model
    for name, files, sign in [("ema truncated", {"ema.safetensors": ema[:100]}, False),
                              ("ema of another model", {"ema.safetensors": other}, True),
                              ("ema missing", {"ema.safetensors": None}, False),
                              ("ema random bytes", {"ema.safetensors": bytes(range(256))}, True)]:
        add("checkpoint content", ["sample", "--checkpoint", w.checkpoint(name.replace(" ", "-"), files=files,
                                                                          sign=sign), "--out", out()])
    add("checkpoint content", ["sample", "--checkpoint", f, "--out", out()])
    empty = w.path("empty-ck")
    empty.mkdir()
    add("checkpoint content", ["sample", "--checkpoint", str(empty), "--out", out()])
    add("checkpoint content", ["sample", "--checkpoint", str(w.root / "nowhere"), "--out", out()])
    state = json.loads((w.ck / "training.json").read_text())
    for name, value in [("step a string", {**state, "step": "300"}), ("no param groups", {**state, "param_groups": []}),
                        ("training a list", [state])]:
        ck2 = w.checkpoint(name.replace(" ", "-"), files={"training.json": json.dumps(value).encode()})
        add("checkpoint content", [*train_toy, "--steps", "310", "--out", ck2])

    # --- command-line syntax -------------------------------------------------------------------------------------
    for argv in (["fly"], [], ["--nope"], ["sample", "--nope", "1"], ["sample", "--out", out()],
                 ["train", "toy", "--preset", "bogus", "--out", out()], [*sample, "--sampler", "euler", "--out", out()],
                 [*sample, "--rule", "cgf", "--out", out()], [*train_toy, "--bf16", "maybe", "--out", out()],
                 ["train", "toy", "--dataset", "nope", "--preset", "smoke", "--out", out()],
                 ["bench", "smell", "--out", out()], ["sample", "--checkpoint"], [*sample, "--w"],
                 [*sample, "--out", out(), "--n", "2", "extra"]):
        add("command-line syntax", argv)
    return out_list


def spawn(case: Case, cpu_limit: int, timeout: float) -> tuple[int | None, str]:
    """Run ``python -m crossguide.cli ARGV`` in a fresh process; its exit status (``None``: it hung) and stderr.

    A hang is a process that spins past ``cpu_limit`` CPU seconds (killed by RLIMIT_CPU) or blocks past
    ``timeout`` wall seconds: CPU time, because on a shared machine a niced process may wait long for a core.
    """
    cmd = [*(LOCKED if case.locked else []), sys.executable, "-m", "crossguide.cli", *case.argv]
    with subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        resource.prlimit(proc.pid, resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 5))  # (no preexec_fn: threads)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None, proc.communicate()[1]
    return (None if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) else proc.returncode), err


def fork(case: Case, cpu_limit: int, timeout: float) -> tuple[int | None, str]:
    """:func:`spawn` without the interpreter's start-up: a child forked from this process, which imported the
    CLI once, runs ``crossguide.cli.main(ARGV)`` as ``python -m crossguide.cli`` would (an uncaught exception prints its
    traceback). A fresh process per input, not a fresh interpreter: for a loaded machine, where start-up
    (imports) is most of the cost."""
    from crossguide.cli import main as cli

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: its own stdio and CPU limit, then exit without running the parent's clean-up
            code = 1
            try:
                os.chdir(ROOT)
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 5))
                devnull = os.open(os.devnull, os.O_RDONLY)
                for fd, target in ((0, devnull), (1, out.fileno()), (2, err.fileno())):
                    os.dup2(target, fd)
                try:
                    code = cli(case.argv)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None, ""
            time.sleep(0.02)
        status = os.waitstatus_to_exitcode(done[1])
        err.seek(0)
        return (None if status in (-signal.SIGXCPU, -signal.SIGKILL) else status), err.read().decode(errors="replace")


def outcome(case: Case, status: int | None, err: str, untouched: bool) -> str:
    """One of :data:`OUTCOMES` for a finished input."""
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line.strip())]
    if status is None:
        return "hang"
    if "Traceback" in err:
        return "traceback"
    if status == 0:
        return "accepted" if case.accept and untouched else "silent"
    clean = (len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0]
             and status == 2 and untouched and not case.accept)
    return "clean" if clean else "other"


def run(case: Case, args: argparse.Namespace) -> tuple[str, int | None, str, float]:
    """One input's outcome, exit status, stderr and wall seconds (in a forked child with ``--fork``, except the
    permission cases, which need ``setpriv``)."""
    before = {p: p.read_bytes() for p in case.intact}
    start = time.perf_counter()
    status, err = (fork if args.fork and not case.locked else spawn)(case, args.cpu_limit, args.timeout)
    took = time.perf_counter() - start
    untouched = all(p.exists() and p.read_bytes() == data for p, data in before.items())
    return outcome(case, status, err, untouched), status, err, took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-limit", type=int, default=120, help="CPU seconds per input before it counts as a hang")
    ap.add_argument("--timeout", type=float, default=3600.0, help="wall seconds per input before it counts as a "
                                                                  "hang (blocked, not spinning)")
    ap.add_argument("--jobs", type=int, default=1, help="inputs run at once (not with --fork)")
    ap.add_argument("--fork", action="store_true", help="fork each input from this process instead of starting "
                                                        "`python -m crossguide.cli` (see `fork`)")
    ap.add_argument("--start", type=int, default=1, help="begin at this input (1-based), to resume a run")
    ap.add_argument("--only", nargs="*", help="classes to run (default: all)")
    ap.add_argument("--log", type=Path, help="append each input's outcome and stderr here (JSON lines)")
    ap.add_argument("--tally", nargs="+", type=Path, metavar="LOG", help="only print the table of these logs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = ap.parse_args()
    if args.tally:
        tally: dict[str, Counter[str]] = {}
        for path in args.tally:
            for line in path.read_text().splitlines():
                row = json.loads(line)
                tally.setdefault(row["class"], Counter())[row["outcome"]] += 1
        print(table(tally))
        return 0
    root = Path(tempfile.mkdtemp(prefix="crossguide-fuzz-"))
    try:
        w = Workspace(root)
        setup = subprocess.run([sys.executable, "-m", "crossguide.cli", "train", "toy", "--preset", "smoke", "--out",
                                str(w.ck)], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
        if setup.returncode != 0:
            print(setup.stderr[-2000:], file=sys.stderr)
            return 1
        todo = [c for c in cases(w) if not args.only or c.kind in args.only]
        assert len({tuple(c.argv) for c in todo}) == len(todo), "inputs must be distinct"
        if args.fork:
            from crossguide import registry

            registry.names()  # load the plug-ins once, before forking
        tally = {}
        log = args.log.open("a") if args.log else None
        jobs = 1 if args.fork else args.jobs  # fork only from a single-threaded process
        with ThreadPoolExecutor(jobs) as pool:
            done = (pool if jobs > 1 else builtins).map(lambda c: run(c, args), todo[args.start - 1:])
            for i, (case, (result, status, err, took)) in enumerate(zip(todo[args.start - 1:], done, strict=True),
                                                                     args.start):
                tally.setdefault(case.kind, Counter())[result] += 1
                shown = " ".join(a if len(a) < 60 else a[:57] + "..." for a in case.argv)
                last = (err.strip().splitlines() or [""])[-1][:150]
                print(f"[{i}/{len(todo)}] {result:9} {took:5.1f}s  {shown}\n      {last}", flush=True)
                if log:
                    log.write(json.dumps({"index": i, "class": case.kind, "argv": case.argv, "outcome": result,
                                          "status": status, "seconds": round(took, 2), "stderr": err[-4000:]}) + "\n")
                    log.flush()
        if log:
            log.close()
        print(table(tally))
        total = sum(tally.values(), Counter())
        good = total["clean"] + total["accepted"]
        print(f"\n{good}/{sum(total.values())} = {100 * good / max(1, sum(total.values())):.1f}% clean or correctly "
              f"accepted; {total['traceback']} tracebacks, {total['hang']} hangs, {total['silent']} silent")
        return 0 if good == sum(total.values()) else 1
    finally:
        if args.keep:
            print(f"work folder: {root}")
        else:
            for p in root.rglob("*"):  # give mode-000 fixtures their permissions back so they can be removed
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)


def table(tally: dict[str, Counter[str]]) -> str:
    """A Markdown table: per class, the inputs and how each ended."""
    rows = ["| class | inputs | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 2) + "|"]
    for kind, counts in [*tally.items(), ("all", sum(tally.values(), Counter()))]:
        rows.append(f"| {kind} | {sum(counts.values())} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
