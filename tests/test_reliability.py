"""Reliability (issue 17): training killed or signalled at any moment resumes to the same bits, checkpoints and
records survive interrupted writes, and damaged files give one clear error instead of a traceback."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crossguide import checkpoint as ckpt
from crossguide import records
from crossguide import trainer as T
from crossguide.errors import UsageError
from crossguide.modalities.toy.mixture import ATTRIBUTES
from crossguide.modalities.toy.mlp import MLPDenoiser
from crossguide.modalities.toy.modality import MODALITY
from crossguide.pipeline import load_model
from crossguide.trainer import TrainConfig, train
from tests.helpers import SCHEDULE, toy_data
from tests.test_trainer import _mlp, _small, _state

ROOT = Path(__file__).resolve().parents[1]
STEPS = MODALITY.preset("smoke").train.steps  # 300: 2-5 s on one core, room for signals to land mid-run

# Runs _train_smoke on argv[1]: "ready" once imported, the message and exit status 130 on Ctrl-C or SIGTERM.
CHILD = """
import signal, sys
from pathlib import Path
import torch._dynamo  # the first optimizer imports it (3 s): before "ready", so that delays count from training
from tests.test_reliability import _train_smoke

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if the runner ignores Ctrl-C
print("ready", flush=True)
try:
    _train_smoke(Path(sys.argv[1]))
except KeyboardInterrupt as e:
    print(e, flush=True)
    sys.exit(130)
"""


def _train_smoke(out: Path) -> None:
    """Train the toy modality's smoke preset into ``out``, with a time-based checkpoint every 0.12 s."""
    spec = MODALITY.preset("smoke")
    data = MODALITY.load_dataset(None, "smoke", None, 0).train
    model = MODALITY.init_model(spec, data, 0)
    config = replace(spec.train, device="cpu", checkpoint_minutes=0.002)
    train(model, MODALITY.schedule(spec), data, config, out=out, progress=False)


def _launch(out: Path) -> subprocess.Popen:
    """Start the training child on ``out`` and return once it has imported everything and starts training."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    if line != "ready\n":
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"training child failed to start: {line!r} {err[-2000:]}")
    return proc


def _step(out: Path) -> int:
    return ckpt.load(out).json["training"]["step"] if ckpt.exists(out) else 0


def _wait_for_a_checkpoint_past(out: Path, step: int) -> None:
    """Poll until the running child has saved a step after ``step``; reads its training.json alone, as a full
    load, which hashes every file, could meet the child's swap half-way."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if json.loads((out / "training.json").read_text())["step"] > step:
                return
        except (OSError, ValueError):  # not written yet, or swapped out under us
            pass
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint past step {step} within 60 s")


def _assert_same(a: Path, b: Path) -> None:
    """Weights, EMA, weak copy, optimizer moments and every RNG state, bit for bit."""
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One thread, as the children have (OMP_NUM_THREADS=1): with another count sums may run in another order,
    and on a busy machine one thread is also the faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run, here in the test's process: the reference for the children's interrupted runs."""
    out = tmp_path_factory.mktemp("straight") / "run"
    _train_smoke(out)
    assert _step(out) == STEPS
    return out


def test_sigkill_at_random_moments_then_resume_gives_the_same_bits(tmp_path: Path, straight: Path) -> None:
    out = tmp_path / "run"
    rng, steps = random.Random(17), []
    for _ in range(3):
        proc = _launch(out)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.kill()  # SIGKILL: no handler runs, whatever the child was doing (a step, a save, a rename)
        proc.communicate(timeout=60)
        steps.append(_step(out))
    assert steps == sorted(steps) and steps[-1] > 0, steps  # the time-based checkpoints kept the work done
    _train_smoke(out)  # the last resume in this process, for speed: it runs the same code
    _assert_same(straight, out)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the killed saves' siblings are gone


def test_sigterm_and_ctrl_c_save_a_step_boundary_and_resume_gives_the_same_bits(tmp_path: Path,
                                                                                straight: Path) -> None:
    out, rng, before = tmp_path / "run", random.Random(3), 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = _launch(out)
        _wait_for_a_checkpoint_past(out, before)  # so the signal surely lands mid-run, however busy the machine
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(sig)
        said, err = proc.communicate(timeout=60)
        step = _step(out)
        assert proc.returncode == 130, err[-3000:]
        assert f"{sig.name}: stopped at step {step}" in said
        assert before < step < STEPS, (before, step)  # the signal landed mid-run, and the run went on from `before`
        before = step
    _train_smoke(out)  # the last resume in this process, for speed: it runs the same code
    _assert_same(straight, out)


class _DropoutMLP(MLPDenoiser):
    """The toy MLP with dropout before its output layer: training draws masks from torch's global RNG."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(ATTRIBUTES, hidden=32, depth=2)
        self.dropout = torch.nn.Dropout(0.3)

    def forward(self, x_t, t, cond):
        return self.out(self.dropout(self.features(x_t, t, cond)))


def test_a_model_with_dropout_resumes_to_the_same_bits_and_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    data, config = toy_data(), _small(30)
    train(_DropoutMLP(), SCHEDULE, data, config, out=tmp_path / "straight", progress=False)
    for stop_at in (10, 20, None):
        model = _DropoutMLP()
        torch.rand(5)  # what the process drew before must not matter
        caller = torch.get_rng_state()
        train(model, SCHEDULE, data, config, out=tmp_path / "resumed", stop_at=stop_at, progress=False)
        assert torch.equal(torch.get_rng_state(), caller)
    _assert_same(tmp_path / "straight", tmp_path / "resumed")
    plain = train(_DropoutMLP(), SCHEDULE, data, replace(config, seed=1), progress=False).model.state_dict()
    assert any(not torch.equal(v, _state(tmp_path / "straight")[f"model.{k}"]) for k, v in plain.items())


def test_checkpoints_are_written_every_n_steps_and_every_so_many_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[int] = []
    real = T.save_checkpoint
    monkeypatch.setattr(T, "save_checkpoint", lambda out, *a, **k: (saved.append(a[4]), real(out, *a, **k)))
    assert TrainConfig().checkpoint_minutes == 1.0  # by default a kill loses at most about a minute
    t0 = time.perf_counter()
    result = train(_mlp(), SCHEDULE, toy_data(), replace(_small(25), checkpoint_every=10, checkpoint_minutes=0),
                   out=tmp_path / "steps", progress=False)
    assert saved == [10, 20, 25]
    assert result.stats["wall_s"] <= time.perf_counter() - t0  # each save counts the wall time once
    saved.clear()
    train(_mlp(), SCHEDULE, toy_data(), replace(_small(5), checkpoint_minutes=1e-9), out=tmp_path / "time",
          progress=False)
    assert saved == [1, 2, 3, 4, 5]
    with pytest.raises(UsageError, match="checkpoint_minutes must be >= 0"):
        replace(_small(5), checkpoint_minutes=-1.0)


def test_resume_ignores_how_often_checkpoints_are_written(tmp_path: Path) -> None:
    train(_mlp(), SCHEDULE, toy_data(), _small(10), out=tmp_path / "c", stop_at=5, progress=False)
    changed = replace(_small(10), checkpoint_every=3, checkpoint_minutes=0.5)
    assert train(_mlp(), SCHEDULE, toy_data(), changed, out=tmp_path / "c", progress=False).step == 10


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _save(path: Path, value: float) -> None:
    ckpt.save(path, {"model": {"w": torch.full((3,), value)}}, {"config": {"v": value}})


def _value(path: Path) -> float:
    return ckpt.load(path).json["config"]["v"]


@pytest.mark.parametrize(("tmp_complete", "restored"), [(True, 2.0), (False, 1.0)])
def test_a_save_killed_between_its_renames_is_recovered_at_the_next_access(
    tmp_path: Path, tmp_complete: bool, restored: float, capsys: pytest.CaptureFixture
) -> None:
    path, dead = tmp_path / "c", _dead_pid()
    _save(path, 1.0)
    _save(tmp_path / "new", 2.0)
    if not tmp_complete:  # killed while writing the new one: its files do not match a manifest yet
        (tmp_path / "new" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "new").rename(tmp_path / f".c.tmp-{dead}")
    path.rename(tmp_path / f".c.old-{dead}")  # the state between the two renames of the dead process's save
    assert ckpt.exists(path) and _value(path) == restored
    assert "restored checkpoint" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_stale_siblings_of_dead_processes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    path, dead = tmp_path / "c", _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [f".c.tmp-{live.pid}", ".d.tmp-1", f".c.tmpx-{dead}", "c.tmp-1"]  # a live writer's, other names
        for name in [f".c.tmp-{dead}", f".c.old-{dead}", *keep]:
            (tmp_path / name).mkdir()
            (tmp_path / name / "f").write_text("x")
        (tmp_path / f".c.old-{dead}x").write_text("x")  # not a PID: not ours
        keep.append(f".c.old-{dead}x")
        _save(path, 1.0)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c", *keep])
        (tmp_path / f".c.tmp-{dead}").mkdir()
        assert _value(path) == 1.0  # a load tidies up too
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c", *keep])
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda c: (c / "manifest.json").write_text("[1, 2]"), r"manifest.json is a JSON list"),
        (lambda c: (c / "manifest.json").write_text('{"model.safetensors": {"bytes": 3}}'),
         r"entry 'model.safetensors' is not"),
        (lambda c: (c / "manifest.json").write_text('{"../x.json": {"sha256": "0", "bytes": 1}}'),
         r"lists '../x.json', which is not a file name"),
        (lambda c: ckpt.save(c, {}, {"config": [1]}), r"config.json' is not a JSON object"),
    ],
)
def test_malformed_checkpoint_files_give_a_checkpoint_error(tmp_path: Path, damage, message: str) -> None:
    _save(tmp_path / "c", 1.0)
    damage(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load(tmp_path / "c")


def _resave(path: Path, edit) -> None:
    """Rewrite a checkpoint after ``edit(tensors, json)``, with a matching manifest: damage only a check can see."""
    saved = ckpt.load(path)
    edit(saved.tensors, saved.json)
    ckpt.save(path, saved.tensors, saved.json)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t, j: j["training"].update(step="7"), r"step '7', not a step count"),
        (lambda t, j: j["training"].update(param_groups={}), r"param_groups are not a list of 1"),
        (lambda t, j: t["training"].pop("rng"), r"RNG state 'rng' is missing"),
        (lambda t, j: t["training"].update(torch_rng=torch.zeros(3, dtype=torch.uint8)), r"'torch_rng' is missing or"),
        (lambda t, j: t["model"].update({"inp.weight": torch.zeros(3, 3)}), r"model.safetensors has inp.weight of sh"),
        (lambda t, j: t["ema"].pop("inp.bias"), r"ema.safetensors does not fit the model \(missing \['inp.bias'\]"),
        (lambda t, j: t["training"].update({"opt.0.exp_avg": torch.zeros(2)}), r"opt.0.exp_avg has shape \[2\]"),
        (lambda t, j: t["training"].update({"opt.x": torch.zeros(())}), r"opt.<param index>.<name>"),
        (lambda t, j: t.pop("training"), r"training.safetensors is missing"),
    ],
)
def test_a_damaged_training_state_gives_a_checkpoint_error_on_resume(tmp_path: Path, edit, message: str) -> None:
    train(_mlp(), SCHEDULE, toy_data(), _small(3), out=tmp_path / "c", progress=False)
    _resave(tmp_path / "c", edit)
    with pytest.raises(ckpt.CheckpointError, match=message):
        train(_mlp(), SCHEDULE, toy_data(), _small(6), out=tmp_path / "c", progress=False)


TOY_REFERENCE = ROOT / "modalities" / "toy" / "reference" / "denoiser-toy-mixture-quick"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("model"), r"needs 'model' as a JSON object, got null"),
        (lambda c: c.update(attributes=[1]), r"needs 'attributes' as a JSON object"),
        (lambda c: c.update(schedule={"name": "linear", "T": "1000"}), r"schedule T must be an integer"),
        (lambda c: c.update(schedule={"name": "wiggly", "T": 1000}), r"config.json: .*wiggly"),
        (lambda c: c["model"].update(hidden="wide"), r"does not describe a model this version can rebuild"),
        (lambda c: c["model"].update(hidden=64), r"does not describe a model this version can rebuild"),
    ],
)
def test_load_model_checks_a_checkpoint_through_the_python_api_too(tmp_path: Path, edit, message: str) -> None:
    shutil.copytree(TOY_REFERENCE, tmp_path / "c")
    _resave(tmp_path / "c", lambda t, j: edit(j["config"]))
    with pytest.raises(ckpt.CheckpointError, match=message):
        load_model(tmp_path / "c")


def test_missing_weights_are_named_for_what_is_missing(tmp_path: Path) -> None:
    shutil.copytree(TOY_REFERENCE, tmp_path / "c")
    _resave(tmp_path / "c", lambda t, j: t.pop("ema"))
    with pytest.raises(ckpt.CheckpointError, match=r"keeps no 'ema' weights; the checkpoint is incomplete"):
        load_model(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match=r"keeps no 'weak' weights \(autoguidance needs"):
        _resave(tmp_path / "c", lambda t, j: t.pop("weak"))
        load_model(tmp_path / "c", weights="weak")
    assert load_model(TOY_REFERENCE, weights="weak")[0] is not None


def test_a_save_never_replaces_a_folder_of_other_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ckpt.CheckpointError, match=r"holds other files and no checkpoint, which a save would replace"):
        train(_mlp(), SCHEDULE, toy_data(), _small(3), out=mine, progress=False)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no sibling left behind
    (tmp_path / "empty").mkdir()
    train(_mlp(), SCHEDULE, toy_data(), _small(3), out=tmp_path / "empty", progress=False)  # empty: fine
    assert ckpt.exists(tmp_path / "empty")


def test_a_truncated_last_record_is_dropped_reported_and_repaired(tmp_path: Path, capsys) -> None:
    path = tmp_path / "records.jsonl"
    records.write_jsonl(path, [{"a": 1}, {"a": 2}])
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"a": 3, "b"')  # a kill during the third append
    assert records.read(path) == [{"a": 1}, {"a": 2}]
    assert capsys.readouterr().err.count("dropped line 3, truncated") == 1
    assert path.read_bytes() == whole  # repaired: read again, nothing to say
    assert records.read(path) == [{"a": 1}, {"a": 2}] and capsys.readouterr().err == ""
    path.write_bytes(whole + b'{"a": 3')
    records.write_jsonl(path, [{"a": 4}])  # an append first repairs, or its line would be glued to the broken one
    assert records.read(path) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_damaged_record_files_give_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(UsageError, match=r"records.jsonl', line 2: not a JSON object"):
        records.read(path)
    path.write_text('{"a": 1}\n[2]\n{"a": 3}\n')
    with pytest.raises(UsageError, match=r"line 2"):
        records.read(path)
    path.unlink()
    path.mkdir()
    for use in (records.read, lambda p: records.write_jsonl(p, [{"a": 1}])):
        with pytest.raises(UsageError, match="is a directory"):
            use(path)


def test_rewriting_records_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    records.write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        records.write_jsonl(path, rows(), mode="w")
    assert records.read(path) == [{"a": 1}] and [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]
    records.write_jsonl(path, [{"a": 2}], mode="w")
    assert records.read(path) == [{"a": 2}]
    with pytest.raises(UsageError, match="unknown write mode 'x'"):
        records.write_jsonl(path, [], mode="x")


def test_the_kill_and_resume_bench_finds_the_same_bits(tmp_path: Path) -> None:
    """``benchmarks/resume.py`` end to end at smoke size: SIGKILL, SIGTERM and SIGINT each land once, at random
    moments of a run checkpointing every 0.12 s, and the resumed run matches the uninterrupted one bit for bit."""
    from crossguide.benchmarks import resume

    argv = ["--modality", "toy", "--preset", "smoke", "--kills", "1", "--terms", "1", "--ints", "1",
            "--checkpoint-minutes", "0.002", "--seed", "1", "--out", str(tmp_path / "bench")]
    assert resume.main(argv) == 0
    result = json.loads((tmp_path / "bench" / "resume.json").read_text(encoding="utf-8"))
    assert result["comparison"]["identical"] and result["comparison"]["tensors"] > 10, result["comparison"]
    assert result["leftovers"] == []
    assert {e["signal"] for e in result["events"]} <= {"kill", "term", "int"}
    # a signal that lands mid-run stops it with 130; one that arrives as the run ends finds it done (exit 0)
    assert all(e["exit"] == 130 for e in result["events"] if e["signal"] != "kill" and e["landed"])
    assert resume.main([*argv[:-1], str(tmp_path / "bench")]) == 2  # never overwrites a finished bench
