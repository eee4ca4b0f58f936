"""The command line end to end on the toy modality, and its one-line errors for user mistakes."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crossguide import records
from crossguide.cli import main
from crossguide.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "toy", "--preset", "smoke", "--w", "-1,0,2", "--out", str(out)]) == 0
    return out


def test_bench_writes_valid_records_manifest_samples_and_plots(bench_dir: Path) -> None:
    recs = records.read(bench_dir / "records.jsonl")
    assert [r["w"] for r in recs] == [-1.0, 0.0, 2.0]
    for r in recs:
        records.validate(r)
        assert r["modality"] == "toy" and r["dataset"] == "mixture" and r["n"] == 8 * 32
        assert set(r["metrics"]) >= {"adherence", "adherence/cluster", "adherence/side", "fd", "diversity",
                                     "precision", "recall", "density", "coverage", "log_prob"}
        assert r["nfe"] == (1 if r["w"] in (-1.0, 0.0) else 2) * r["steps"]
        assert (bench_dir / r["picture"]).is_file()
    manifest = records.read(bench_dir / "samples" / "manifest.jsonl")
    assert len(manifest) == 3 * 8 * 32
    first = manifest[0]
    assert set(first) >= {"path", "condition", "w", "seed"}
    assert (bench_dir / "samples" / first["path"].split("#")[0]).is_file()
    for name in ("adherence_vs_w", "fd_vs_w", "diversity_vs_w", "fd_vs_adherence"):
        assert (bench_dir / "plots" / f"{name}.png").stat().st_size > 1000
    summary = json.loads((bench_dir / "summary.json").read_text())
    assert summary["adherence_w0"] == recs[1]["metrics"]["adherence"]


def test_bench_rerun_reuses_settings_and_force_recomputes_without_duplicates(bench_dir: Path) -> None:
    before = (bench_dir / "records.jsonl").read_text()
    assert main(["bench", "toy", "--preset", "smoke", "--w", "-1,0,2", "--out", str(bench_dir)]) == 0
    assert (bench_dir / "records.jsonl").read_text() == before
    assert main(["bench", "toy", "--preset", "smoke", "--w", "0", "--out", str(bench_dir), "--force"]) == 0
    recs = records.read(bench_dir / "records.jsonl")
    assert sorted(r["w"] for r in recs) == [-1.0, 0.0, 2.0]
    assert len(records.read(bench_dir / "samples" / "manifest.jsonl")) == 3 * 8 * 32


def test_sample_with_a_rule_its_options_and_wrappers(bench_dir: Path, tmp_path: Path) -> None:
    ckpt = str(bench_dir / "model")
    for rule, args in (("apg", "eta=0,momentum=-0.5"), ("auto", ""), ("classifier", "on=uncond")):
        assert main(["sample", "--checkpoint", ckpt, "--cond", "cluster=north,side=outer", "--w", "2", "--n", "8",
                     "--rule", rule, "--rule-args", args, "--interval", "0.1,20", "--schedule", "cosine",
                     "--out", str(tmp_path / rule)]) == 0
        assert (tmp_path / rule / "points.csv").read_text().count("\n") == 9
    assert (bench_dir / "model.classifier" / "ema.safetensors").is_file()  # trained beside the checkpoint


def test_sample_from_checkpoint_with_composition_and_negative(bench_dir: Path, tmp_path: Path) -> None:
    ckpt = str(bench_dir / "model")
    assert main(["sample", "--checkpoint", ckpt, "--cond", "cluster=north,side=outer", "--w", "2", "--n", "8",
                 "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "points.csv").read_text().count("\n") == 9
    assert (tmp_path / "a" / "grid.png").is_file()
    assert main(["sample", "--checkpoint", ckpt, "--cond", "cluster=north,side=outer", "--compose",
                 "cluster=2,side=0.5", "--negative", "side=inner", "--n", "4", "--out", str(tmp_path / "b")]) == 0


def test_sample_names_its_setting_on_the_grid_and_a_progress_bar_of_steps(
        bench_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A composition's grid is titled with its weights (it once read "w=0"), and sampling shows one bar named by
    the rule, the weights and the sampler that counts sampling steps."""
    from crossguide.modalities.toy.modality import MODALITY

    titles: list[str] = []
    monkeypatch.setattr(MODALITY, "draw", lambda samples, labels, path, title, info: titles.append(title))
    assert main(["sample", "--checkpoint", str(bench_dir / "model"), "--cond", "cluster=north,side=outer",
                 "--compose", "cluster=2,side=0.5", "--sampler", "ddpm", "--steps", "7", "--n", "4",
                 "--out", str(tmp_path / "c")]) == 0
    assert titles == ["cluster=north,side=outer: w=2 on cluster, w=0.5 on side (cfg)"]
    err = capsys.readouterr().err
    assert "cfg, w=2 on cluster, w=0.5 on side, ddpm" in err and "/7 " in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "nope", "--out", "X"], "unknown modality 'nope'; valid: "),
        (["bench", "toy", "--dataset", "nope", "--out", "X"], "unknown toy dataset 'nope'; valid: mixture"),
        (["bench", "toy", "--preset", "smoke", "--steps", "0", "--w", "0", "--out", "X"],
         "--steps must be an integer in [1, 10000], got 0"),
        (["bench", "toy", "--preset", "smoke", "--sampler", "euler", "--w", "0", "--out", "X"],
         "unknown sampler 'euler'; valid: ddim, ddpm, dpmpp2m"),
        (["train", "toy", "--preset", "smoke", "--p-uncond", "-0.5", "--out", "X"],
         "--p-uncond must be a finite number in [0, 1]"),
        (["sample", "--checkpoint", "MODEL", "--cond", "cluster=up", "--out", "X"],
         "unknown value 'up' for attribute 'cluster'; valid: north, east, south, west"),
        (["sample", "--checkpoint", "MODEL", "--cond", "colour=red", "--out", "X"],
         "unknown attribute 'colour'; valid: cluster, side"),
        (["sample", "--checkpoint", "missing-dir", "--out", "X"], "does not exist"),
        (["bench", "toy", "--rule", "cgf", "--out", "X"], "unknown guidance rule 'cgf'; valid: apg, auto, cfg"),
        (["bench", "toy", "--rule", "apg", "--rule-args", "beta=1", "--out", "X"],
         "unknown option 'beta' for guidance rule 'apg'; valid: eta, r, momentum, space"),
        (["bench", "toy", "--rule", "apg", "--rule-args", "eta", "--out", "X"],
         "--rule-args part 'eta' is not of the form name=value"),
        (["bench", "toy", "--rule", "apg", "--rule-args", "momentum=2", "--out", "X"],
         "apg momentum must be in (-1, 1), got 2.0"),
        (["bench", "toy", "--interval", "5,1", "--out", "X"], "guidance interval must be noise levels 0 <= lo < hi"),
        (["bench", "toy", "--schedule", "steep", "--out", "X"],
         "unknown weight schedule 'steep'; valid: constant, linear, cosine"),
        (["sample", "--checkpoint", "MODEL", "--rule", "auto", "--negative", "side=inner", "--out", "X"],
         "guidance rule 'auto' takes no negative condition"),
        (["study", "--preset", "smoke", "--rules", "apg,nope", "--out", "X"], "unknown guidance rule 'nope'"),
        (["study", "--preset", "smoke", "--modalities", "", "--out", "X"], "--modalities is empty; valid: "),
        (["sample", "--checkpoint", "MODEL", "--cond", "side=inner,side=outer", "--out", "X"],
         "--cond gives attribute 'side' twice"),
        (["sample", "--checkpoint", "MODEL", "--cond", "side=inner", "--compose", "side=2", "--w", "1", "--out", "X"],
         "compose gives each attribute its own weight; drop w=1"),
        (["sample", "--checkpoint", "MODEL", "--cond", "side=inner", "--compose", "cluster=2", "--out", "X"],
         "compose weights attribute 'cluster', which the condition does not set"),
        (["sample", "--checkpoint", "MODEL", "--cond", "side=inner", "--negative", "side=inner", "--out", "X"],
         "is the condition itself"),
        (["sample", "--checkpoint", "MODEL", "--w", "1e6", "--out", "X"],
         "--w must be a finite number in [-1000, 1000]"),
        (["bench", "toy", "--w", "", "--out", "X"], "argument --w: expected comma-separated numbers"),
        (["train", "toy", "--seed", str(2**63), "--out", "X"], "--seed must be an integer in [0, 9223372036854775807]"),
        (["train", "toy", "--device", "gpu", "--out", "X"], "unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N"),
        (["sample", "--checkpoint", "MODEL", "--out", "FILE"], "is an existing file, not a directory"),
        (["train", "toy", "--preset", "smoke", "--out", "FILE"], "is an existing file, not a directory"),
        (["train", "toy", "--model", "unet", "--out", "X"], "unknown toy denoiser 'unet'; valid: mlp"),
        (["bench", "toy", "--model", "image.unet", "--out", "X"], "denoiser 'image.unet' belongs to another modality"),
        (["train", "toy", "--model-args", "width=3", "--out", "X"],
         "--model-args: denoiser toy.mlp has no option 'width'; valid: kind, prediction, hidden, depth"),
        (["bench", "toy", "--model-args", "hidden", "--out", "X"], "--model-args part 'hidden' is not of the form"),
        (["bench", "toy", "--checkpoint", "MODEL", "--model", "mlp", "--out", "X"],
         "--model and --model-args choose a denoiser to train; --checkpoint already holds one"),
        (["bench", "toy", "--preset", "smoke", "--model-args", "kind=big", "--out", "X"],
         "unknown toy model kind 'big'; valid: mlp, exact"),
        (["study", "--preset", "smoke", "--model", "mlp", "--out", "X"],
         "--model 'mlp': the study runs several modalities, so name the denoiser as MODALITY.NAME"),
        (["study", "--preset", "smoke", "--model", "toy.mlp", "--modalities", "image", "--out", "X"],
         "--model names a toy denoiser, but the study does not run toy (--modalities: image)"),
        (["study", "--preset", "smoke", "--model", "toy.mlp,image.unet", "--model-args", "hidden=3", "--out", "X"],
         "--model-args configures one denoiser; --model names 2"),
        (["study", "--preset", "smoke", "--model", "text.diffusion-lm", "--model-args", "depth=3", "--out", "X"],
         "--model-args: denoiser text.diffusion-lm has no option 'depth'"),
    ],
)
def test_user_mistakes_give_one_line_errors(argv: list[str], message: str, bench_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("the user's\n")
    names = {"MODEL": str(bench_dir / "model"), "X": str(tmp_path / "out"), "FILE": str(tmp_path / "file")}
    assert main([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out" / "records.jsonl").exists() and not (tmp_path / "out" / "grid.png").exists()
    assert (tmp_path / "file").read_text() == "the user's\n"


def test_debug_shows_the_traceback_and_training_keeps_a_folder_of_the_users_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="--n must be an integer"):
        main(["sample", "--debug", "--checkpoint", str(tmp_path), "--n", "0", "--out", str(tmp_path / "s")])
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["train", "toy", "--preset", "smoke", "--out", str(tmp_path)]) == 2
    assert "holds other files and no checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_console_script_prints_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "crossguide.cli", "bench", "nope", "--out", "/tmp/x"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: unknown modality 'nope'")


def test_threads_sets_torchs_thread_count_and_is_range_checked(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "list"]) == 0  # before the subcommand
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        assert main(["list", "--threads", "1"]) == 0  # or after it
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert main(["list", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"crossguide {metadata.version('crossguide')}"


def test_every_crossguide_command_in_the_readme_parses() -> None:
    """Each ``crossguide ...`` command of the README's shell blocks, as a user would paste it, gets through the
    real parser and its range checks (running them is the study's and the benches' tests' job)."""
    import re
    import shlex

    from crossguide.cli import _arguments, _check_ranges, parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = [shlex.split(part, comments=True) for block in blocks for line in block.splitlines()
                for part in line.split("&&")]
    commands = [c for c in commands if c and c[0] == "crossguide"]
    assert len(commands) >= 20, len(commands)
    for argv in commands:
        _check_ranges(parser().parse_args(_arguments(argv[1:])))


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every ``crossguide`` subcommand's parser, by name."""
    from crossguide.cli import parser

    ap = parser()
    return next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices


def _required(sub: argparse.ArgumentParser) -> list[str]:
    """Arguments that satisfy ``sub``'s required options and positionals (values are not checked here)."""
    argv: list[str] = []
    for a in sub._actions:
        if a.required:
            value = "toy" if a.dest == "modality" else a.choices[0] if a.choices else "x"
            argv += [value] if not a.option_strings else [a.option_strings[0], value]
    return argv


def test_every_numeric_option_takes_a_value_with_a_leading_minus() -> None:
    """``--w -3,-1,0`` is a value, not an option (argparse alone stops with "expected one argument"): every option
    of every command that takes numbers, lists included, through the real parser."""
    from crossguide.cli import _arguments, _floats, parser

    cases = {_floats: ("-3,-.5,-1e-1", [-3.0, -0.5, -0.1]), float: ("-1e-3", -1e-3), int: ("-2", -2)}
    seen = set()
    for name, sub in _subcommands().items():
        for a in sub._actions:
            if a.option_strings and a.type in cases:
                text, value = cases[a.type]
                for given in ([a.option_strings[0], text], [f"{a.option_strings[0]}={text}"]):
                    args = parser().parse_args(_arguments([name, *_required(sub), *given]))
                    assert getattr(args, a.dest) == value, (name, given)
                seen.add((name, a.option_strings[0]))
    assert {("bench", "--w"), ("bench", "--interval"), ("sample", "--interval"), ("sample", "--w"),
            ("study", "--seeds")} <= seen


def test_every_option_has_help_and_shows_its_default() -> None:
    """``crossguide COMMAND --help`` explains every option and gives its default (``None`` and flags say in words
    what happens when they are not given); names chosen from a registry are listed."""
    for name, sub in _subcommands().items():
        text = " ".join(sub.format_help().split())
        for a in sub._actions:
            assert a.help, (name, a.dest)
            if a.option_strings and not a.required and a.nargs != 0:  # an option that takes a value
                assert "default: " in sub._get_formatter()._get_help_string(a), (name, a.dest)
        if name in ("bench", "sample"):
            assert "--rule {apg,auto,cfg," in text and "--sampler {ddim,ddpm,dpmpp2m}" in text
        if name in ("bench", "train"):
            assert "{audio,image,text,toy}" in text and "--preset {smoke,quick,full}" in text


def test_every_option_the_readme_names_exists() -> None:
    """The README names only options that exist (it once named ``--chunk``), outside the lines that run other
    programs (``python -m benchmarks...``, ``torchrun``)."""
    import re

    known = {o for sub in _subcommands().values() for a in sub._actions for o in a.option_strings}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if not line.lstrip().startswith(("python -m", "torchrun"))]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", "\n".join(lines)))
    assert named and named <= known, sorted(named - known)


_WITHOUT_TORCH = """
import contextlib, io, json, sys
from crossguide.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
    results.append({"argv": argv, "status": status, "torch": "torch" in sys.modules, "out": out.getvalue()})
print(json.dumps(results))
"""


def test_help_list_and_argument_checks_answer_without_importing_torch(tmp_path: Path) -> None:
    """``--help``, every ``COMMAND --help``, ``list`` and the checks of names and numbers never import torch (it
    takes seconds to load), checked in a fresh interpreter after each."""
    out = str(tmp_path / "out")
    cases = [(["--help"], 0, "COMMAND"), (["list"], 0, "rule apg"), (["--version"], 0, "crossguide"),
             *((([name, "--help"], 0, "usage")) for name in _subcommands()),
             (["bench", "nope", "--out", out], 2, "unknown modality 'nope'"),
             (["bench", "toy", "--dataset", "nope", "--out", out], 2, "unknown toy dataset 'nope'"),
             (["bench", "toy", "--rule", "cgf", "--out", out], 2, "unknown guidance rule 'cgf'"),
             (["sample", "--checkpoint", out, "--sampler", "euler", "--out", out], 2, "unknown sampler 'euler'"),
             (["train", "toy", "--preset", "big", "--out", out], 2, "invalid choice: 'big'"),
             (["bench", "toy", "--w", "-3,-1,1e9", "--out", out], 2, "--w must be a finite number in"),
             (["study", "--rules", "apg,nope", "--out", out], 2, "unknown guidance rule 'nope'"),
             (["reference", "build", "--modalities", "toy,nope"], 2, "unknown modality 'nope'")]
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, json.dumps([argv for argv, _, _ in cases])],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    for (argv, status, text), result in zip(cases, json.loads(proc.stdout), strict=True):
        assert (result["status"], result["torch"]) == (status, False), (argv, result)
        assert text in result["out"], (argv, result["out"])


def test_every_deferred_plug_in_function_resolves() -> None:
    """Each ``Deferred("module:function")`` a built-in plug-in names (its dataset factories) imports and is a
    function: a misspelt name would otherwise fail only when that dataset is first used."""
    import re

    from crossguide.plugins import Deferred

    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "modalities").rglob("*.py"))
    targets = re.findall(r'Deferred\("([\w.]+:\w+)"\)', sources)
    assert len(targets) >= 10, targets
    for target in targets:
        assert callable(Deferred(target).load()), target


class _Echo:
    """A command plug-in, as another package would ship one through the crossguide.commands entry point."""

    help = "print a word"

    def add_arguments(self, p) -> None:
        p.add_argument("--word", default="hello")

    def run(self, args) -> int:
        print(f"echo {args.word}")
        return 0


def test_commands_come_from_entry_points_and_a_broken_one_says_why(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import crossguide.cli as cli

    installed = cli.commands()
    assert {"study", "reference"} <= installed.keys()  # benchmarks/ registers them; core/ never imports it
    assert "benchmarks" not in (ROOT / "core" / "cli.py").read_text(encoding="utf-8")
    monkeypatch.setattr(cli, "commands", lambda: {**installed, "echo": _Echo(),
                                                  "bad": cli._Broken("bad", "ImportError: no module x")})
    assert main(["echo", "--word", "guidance"]) == 0
    assert capsys.readouterr().out == "echo guidance\n"
    assert main(["bad"]) == 2
    assert capsys.readouterr().err.strip() == ("error: command 'bad' is installed but failed to load "
                                               "(ImportError: no module x)")
