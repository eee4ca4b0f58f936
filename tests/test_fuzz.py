"""Property-based fuzzing of the user-facing boundary (hypothesis): the CLI's option parsers and ranges, the
condition parser, the checkpoint loader on edited config.json / manifest.json, and the three user-data loaders
on random bytes and encodings.

Every input either is accepted (where the option's documented range or grammar allows it) or ends in exit
status 2 and one stderr line ``error: ...``, never a traceback or an ``internal error``. Everything runs
in-process on a toy smoke checkpoint trained once; ``tests/fuzz_cli.py`` runs the same classes as separate
processes.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from crossguide import conditions as C
from crossguide.cli import MAX_SEED, MAX_W, RANGES, main
from crossguide.data import Splits
from crossguide.errors import UsageError
from crossguide.modalities.audio.folder import folder_dataset as audio_folder
from crossguide.modalities.image.datasets import folder_dataset as image_folder
from crossguide.modalities.text.jsonl import jsonl
from tests.fuzz_cli import PROGRESS, resign

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
ATTRS = {"cluster": ["north", "east", "south", "west"], "side": ["inner", "outer"]}  # the toy model's
# argparse `type=int` / `type=float` text: digits, signs, exponents, specials, junk and Unicode digits
NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "-inf", "1e309", "0x10", "1_000", "٣", "1,2", "--", "1e-400", "+5", "5.0"]),
    st.text(max_size=6),
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the toy smoke checkpoint ``ck`` (trained once here) and a regular file ``file``."""
    root = tmp_path_factory.mktemp("fuzz")
    assert main(["train", "toy", "--preset", "smoke", "--out", str(root / "ck")]) == 0
    (root / "file").write_text("the user's file\n")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``main(argv)``'s exit status and stderr; a status 2 must come with exactly one ``error:`` line."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status in (0, 2), (argv, status, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if status == 2:  # progress bars (an error mid-sampling follows one) aside
        lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line.strip())]
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    return status, err


def in_range(dest: str, text: str) -> bool:
    """The oracle: whether argparse and :data:`RANGES` should accept ``text`` for option ``dest``."""
    _, lo, hi, open_lo = RANGES[dest]
    try:
        value = int(text) if isinstance(lo, int) else float(text)
    except ValueError:
        return False
    finite = isinstance(value, int) or math.isfinite(value)
    return finite and (value > lo if open_lo else value >= lo) and value <= hi


@pytest.mark.parametrize(("command", "dest"), [("train", "train_steps"), ("train", "batch_size"), ("train", "lr"),
                                               ("train", "p_uncond"), ("train", "p_attr"), ("train", "seed"),
                                               ("sample", "n"), ("sample", "seed"), ("sample", "steps"),
                                               ("sample", "w"), ("study", "seeds")])
@FUZZ
@given(text=NUMBER_TEXT)
@example(text=str(MAX_SEED))
@example(text=str(MAX_SEED + 1))
def test_numeric_options_accept_their_range_and_reject_the_rest_in_one_line(
        command: str, dest: str, text: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    option = RANGES[dest][0]
    # --out is the user's regular file: whatever the number, the command stops before any work
    head = {"train": ["train", "toy", "--preset", "smoke"], "sample": ["sample", "--checkpoint", str(work / "ck")],
            "study": ["study", "--preset", "smoke", "--modalities", "toy"]}[command]
    status, err = run([*head, f"{option}={text}", "--out", str(work / "file")], capsys)
    assert status == 2
    if in_range(dest, text):
        assert "is an existing file" in err and (work / "file").read_text() == "the user's file\n"
    else:
        assert option in err or "invalid" in err, err


@FUZZ
@given(ws=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5000, 5000)), max_size=4),
       sep=st.sampled_from([",", ",,", ", "]))
def test_bench_weight_lists_are_finite_bounded_distinct_and_nonempty(
        ws: list[float], sep: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = sep.join(repr(float(w)) for w in ws)
    status, err = run(["bench", "toy", "--preset", "smoke", f"--w={text}", "--out", str(work / "file")], capsys)
    good = (bool(ws) and (sep != ",," or len(ws) == 1) and all(math.isfinite(w) and abs(w) <= MAX_W for w in ws)
            and len(set(map(float, ws))) == len(ws))
    assert status == 2 and (("is an existing file" in err) == good), err


PART = st.one_of(
    st.sampled_from([f"{a}={v}" for a, vs in ATTRS.items() for v in vs]),
    st.sampled_from(["cluster", "=north", "colour=red", "side=up", "cluster=north=x", " ", "side = outer"]),
    st.text(alphabet="ab=, \t\n\x00é\ud800", max_size=5),
)


@FUZZ
@given(parts=st.lists(PART, max_size=4))
def test_condition_parser_accepts_exactly_known_pairs_each_once(parts: list[str]) -> None:
    text = ",".join(parts)
    pieces = [p.strip() for p in text.split(",") if p.strip()]
    named = [(p.partition("=")[0].strip(), p.partition("=")[2].strip()) for p in pieces]
    valid = (all("=" in p for p in pieces) and all(n in ATTRS and v in ATTRS[n] for n, v in named)
             and len({n for n, _ in named}) == len(named) and (bool(pieces) or not text.strip()))
    try:
        choice = C.parse(text, ATTRS, "--cond")
    except UsageError as e:
        assert not valid and "\n" not in str(e), e
    else:
        assert valid and choice == {n: ATTRS[n].index(v) for n, v in named}


@FUZZ
@given(cond=st.lists(PART, max_size=3).map(",".join), compose=st.lists(PART, max_size=3).map(",".join),
       w=st.sampled_from(["0", "2"]))
def test_sample_conditions_and_compositions_are_clean_errors_or_samples(
        cond: str, compose: str, w: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assume("\x00" not in cond + compose)  # argv cannot hold NUL
    out = work / "samples"
    status, err = run(["sample", "--checkpoint", str(work / "ck"), f"--cond={cond}", f"--compose={compose}",
                       f"--w={w}", "--n", "2", "--steps", "2", "--out", str(out)], capsys)
    if status == 0:  # then every composed attribute is set by --cond, each once, and --w is not also given
        composed = C.pairs(compose, "--compose")
        chosen = C.parse(cond, ATTRS)
        assert all(n in chosen for n, _ in composed) and (w == "0" or not composed)
        assert (out / "points.csv").read_text().count("\n") == 3


# small integers: a config may size a model by them, and a huge one would allocate it
JSON = st.recursive(st.none() | st.booleans() | st.integers(-4, 300) | st.floats() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                    max_leaves=6)
CONFIG_PATHS = [("modality",), ("attributes",), ("attributes", "cluster"), ("model",), ("model", "hidden"),
                ("model", "prediction"), ("model", "kind"), ("schedule",), ("schedule", "T"), ("schedule", "name"),
                ("train",), ("preset",), ("data_info",), ("dataset",)]


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), st.one_of(st.just("<delete>"), JSON)), min_size=1,
                      max_size=2),
       whole=st.one_of(st.none(), JSON))
def test_checkpoint_loader_rejects_edited_configs_in_one_line(
        edits: list[tuple[tuple[str, ...], object]], whole: object, work: Path,
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path_factory.mktemp("ck") / "ck"
    shutil.copytree(work / "ck", ck)
    config = json.loads((ck / "config.json").read_text())
    for path, value in edits:
        parent = config
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):  # an earlier edit replaced the object this one edits
            continue
        if value == "<delete>":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    (ck / "config.json").write_text(json.dumps(config if whole is None else whole))
    resign(ck)
    run(["sample", "--checkpoint", str(ck), "--n", "1", "--steps", "2", "--out", str(ck.parent / "s")], capsys)


@FUZZ
@given(manifest=JSON, keep=st.booleans())
def test_checkpoint_loader_rejects_edited_manifests_in_one_line(
        manifest: object, keep: bool, work: Path, tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path_factory.mktemp("ck") / "ck"
    shutil.copytree(work / "ck", ck)
    real = json.loads((ck / "manifest.json").read_text())
    edited = {**real, **manifest} if keep and isinstance(manifest, dict) else manifest
    (ck / "manifest.json").write_text(json.dumps(edited))
    status, _ = run(["sample", "--checkpoint", str(ck), "--n", "1", "--steps", "2", "--out", str(ck.parent / "s")],
                    capsys)
    assert status == 2 or edited == real


def loads_or_usage_error(load: Callable[..., Splits], *args: Any) -> Splits | None:
    """A user-data loader's outcome must be splits or a one-line :class:`UsageError` naming the bad file."""
    try:
        return load(*args)
    except UsageError as e:
        assert "\n" not in str(e) and "bad" in str(e), e
        return None


ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp1252"])
LINE = st.one_of(
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=12), "colour": st.sampled_from(["black", "wh"])}),
    JSON,
).map(lambda v: json.dumps(v, ensure_ascii=False))


@FUZZ
@given(lines=st.lists(st.one_of(LINE, st.just('{"text": "\\ud800 a", "colour": "black"}'), st.text(max_size=8)),
                      max_size=5),
       encoding=ENCODINGS, junk=st.binary(max_size=8))
def test_jsonl_loader_reads_utf8_and_names_the_line_of_anything_else(
        lines: list[str], encoding: str, junk: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "bad.jsonl"
    try:
        data = "\n".join(lines).encode(encoding)
    except UnicodeEncodeError:
        data = "\n".join(lines).encode("utf-8", "surrogatepass")  # a raw lone surrogate: invalid UTF-8
    path.write_bytes(data + junk)
    loads_or_usage_error(jsonl, {"length": 16}, path, 0)


def _wav(path: Path, samples: np.ndarray, rate: int = 8000) -> None:
    sf.write(str(path), samples, rate, subtype="FLOAT")


@FUZZ
@given(kind=st.sampled_from(["bytes", "nan", "inf", "empty", "silent", "stereo", "text", "subdir"]),
       junk=st.binary(max_size=64))
def test_audio_folder_loader_names_the_bad_file(kind: str, junk: bytes,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("audio")
    for label in ("a", "b"):
        (root / label).mkdir()
        _wav(root / label / "good.wav", np.sin(np.arange(800) / 3.0).astype(np.float32))
    bad = root / "a" / ("bad.txt" if kind == "text" else "bad.wav")
    if kind == "bytes":
        bad.write_bytes(junk)
    elif kind == "subdir":
        bad.mkdir()
    elif kind == "text":
        bad.write_text("hello")
    else:
        samples = {"nan": np.full(800, np.nan), "inf": np.r_[np.zeros(799), np.inf], "empty": np.zeros(0),
                   "silent": np.zeros(800), "stereo": np.ones((800, 2)) * 0.5}[kind]
        _wav(bad, samples.astype(np.float32))
    splits = loads_or_usage_error(audio_folder, {"sample_rate": 8000, "duration": 0.05, "test_fraction": 0.3},
                                  root, 0)
    assert (splits is not None) == (kind == "stereo")


@FUZZ
@given(junk=st.binary(max_size=64), header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\xff\xd8"]),
       suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp"]))
def test_image_folder_loader_names_the_undecodable_file(junk: bytes, header: bytes, suffix: str,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for label in ("a", "b"):
        (root / label).mkdir()
        Image.new("RGB", (4, 4), (200, 10, 10)).save(root / label / "good.png")
    (root / "a" / f"bad{suffix}").write_bytes(header + junk)
    loads_or_usage_error(image_folder, {"size": 8}, root, 0)


@pytest.mark.parametrize("argv", [
    ["sample", "--checkpoint", "CK", "--cond", "cluster=north,cluster=east", "--out", "OUT"],
    ["sample", "--checkpoint", "CK", "--cond", "cluster=north", "--compose", "cluster=1", "--w", "3", "--out", "OUT"],
    ["sample", "--checkpoint", "CK", "--cond", "cluster=north", "--compose", "side=1", "--out", "OUT"],
    ["sample", "--checkpoint", "CK", "--out", "FILE"],
    ["train", "toy", "--preset", "smoke", "--device", "cuda:7", "--out", "OUT"],
    ["study", "--preset", "smoke", "--modalities", "", "--out", "OUT"],
    ["--debug", "sample", "--checkpoint", "CK", "--n", "0", "--out", "OUT"],
    ["sample", "--checkpoint", "CK", "--n", "0", "--out", "OUT", "--debug"],
])
def test_debug_shows_the_traceback_and_its_absence_one_line(argv: list[str], work: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = [{"CK": str(work / "ck"), "OUT": str(work / "out"), "FILE": str(work / "file")}.get(a, a) for a in argv]
    if "--debug" in argv:
        with pytest.raises(UsageError, match="--n must be an integer"):
            main(argv)
    else:
        assert run(argv, capsys)[0] == 2
    assert (work / "file").read_text() == "the user's file\n"


def test_non_finite_samples_are_an_error_and_never_written(work: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from crossguide import samplers

    ddim = samplers.get("ddim")
    monkeypatch.setattr(samplers, "get", lambda name: lambda *a, **k: ddim(*a, **k) * float("nan"))
    status, err = run(["sample", "--checkpoint", str(work / "ck"), "--w", "3", "--n", "2", "--out",
                       str(work / "nan")], capsys)
    assert status == 2 and "NaN or infinite" in err and "w=3" in err
    assert not (work / "nan").exists()


def test_a_float_wav_of_nan_is_named_not_an_index_error(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        _wav(tmp_path / label / "x.wav", np.full(100, np.nan, dtype=np.float32))
    with pytest.raises(UsageError, match=r"x.wav' holds NaN or infinite samples"):
        audio_folder({"sample_rate": 8000, "duration": 0.05}, tmp_path, 0)
