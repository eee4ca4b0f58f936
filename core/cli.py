"""The ``crossguide`` command line: a thin layer over :mod:`crossguide.pipeline` and :mod:`crossguide.bench`, plus the
subcommands installed through the ``crossguide.commands`` entry points (:class:`Command`): the study and the
reference models are defined in the layer above core, which core never imports.

Every mistake a user can make is caught at this boundary: an unknown name, a number out of its range
(:data:`RANGES`), contradictory options, a bad or unreadable file, an output path that cannot be written. Each
prints one ``error:`` line and exits with status 2, found before any work where it can be, with nothing of the
user's moved or overwritten. ``--debug``, anywhere on the command line, shows the traceback instead. Any other
exception is a bug: one ``error: internal error ...`` line and status 1.

Nothing here imports torch before it is needed: ``--help``, ``list`` and the checks of names and numbers answer
in a fraction of the seconds torch takes to load (the plug-ins' registries are free of it, :mod:`crossguide.plugins`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from crossguide.config import MAX_W
from crossguide.errors import UsageError, check_choice, check_range, describe_os_error
from crossguide.registry import PRESETS

if TYPE_CHECKING:
    from crossguide.guidance import Guidance

# Sanity bounds on numbers, far beyond any preset or paper, that stop a typo from allocating terabytes, running
# for years or overflowing: checked right after parsing, before any work.
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's non-negative range
RANGES: dict[str, tuple[str, float, float, bool]] = {  # argparse dest -> (option, lo, hi, lo excluded)
    "n": ("--n", 1, 100_000, False),  # samples in one `sample` call
    "seed": ("--seed", 0, MAX_SEED, False),
    "seeds": ("--seeds", 1, 100, False),  # sampling seeds per study setting
    "steps": ("--steps", 1, 10_000, False),  # sampler steps (the schedule's T bounds them further)
    "train_steps": ("--steps", 1, 10_000_000, False),  # training steps
    "batch_size": ("--batch-size", 1, 65_536, False),
    "lr": ("--lr", 0.0, 1.0, True),
    "p_uncond": ("--p-uncond", 0.0, 1.0, False),
    "p_attr": ("--p-attr", 0.0, 1.0, False),
    "w": ("--w", -MAX_W, MAX_W, False),
    "threads": ("--threads", 1, 1024, False),
}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
COMMANDS = "crossguide.commands"  # entry-point group of the subcommands defined above core/


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes (unknown option, missing argument, bad number) raise :class:`UsageError`, so
    :func:`main` prints them as one line like every other mistake instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _floats(text: str) -> list[float]:
    """``"-1,0,2.5"`` -> ``[-1.0, 0.0, 2.5]``: at least one finite number, no empty items."""
    items = [v.strip() for v in text.split(",")]
    try:
        values = [float(v) for v in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def path_arg(text: str) -> Path:
    """A path option; an empty one (usually an unset shell variable) would mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def _device(text: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N, where that device exists on this machine."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; valid: auto, cpu, cuda, cuda:N")
    if text.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(text.partition(":")[2] or 0) >= count:
            here = ", ".join(["auto", "cpu", *(f"cuda:{i}" for i in range(count))])
            raise argparse.ArgumentTypeError(f"{text!r} is not available on this machine ({count} CUDA devices); "
                                             f"valid here: {here}")
    return text


def _one_of(names: Sequence[str]) -> str:
    """A metavar that lists the valid names, as argparse shows ``choices`` (checked by :func:`_check_names`, whose
    errors name a plug-in that failed to load)."""
    return "{" + ",".join(names) + "}"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option with its default, unless there is none to show (a flag, a ``None`` whose meaning
    the help text gives) or the text gives it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "(default" in text:
            return text
        return super()._get_help_string(action) or text


def _guidance_args(p: argparse.ArgumentParser) -> None:
    """``--rule``, ``--rule-args`` and the wrappers ``--interval`` and ``--schedule`` (read by :func:`_guidance`)."""
    from crossguide import rules

    p.add_argument("--rule", default="cfg", metavar=_one_of(rules.names()),
                   help="guidance rule; its options: `crossguide list`")
    p.add_argument("--rule-args", default="", metavar="K=V,...",
                   help="the rule's options, e.g. eta=0,r=15 (default: the rule's defaults)")
    p.add_argument("--interval", type=_floats, metavar="LO,HI",
                   help="guide only at noise levels sigma = sqrt((1 - alpha_bar) / alpha_bar) in [LO, HI] "
                        "(default: at every step)")
    p.add_argument("--schedule", default="constant", metavar="KIND[:SMIN,SMAX]",
                   help="weight schedule over the noise level: constant, linear or cosine, rising as noise falls and "
                        "averaging w over log sigma in [SMIN, SMAX] (0.01,100 unless given)")


def _sampler_args(p: argparse.ArgumentParser, *, sampler: str | None, steps: int | None) -> None:
    """``--sampler`` and ``--steps`` with these defaults (``None``: the preset's)."""
    from crossguide import samplers

    preset = " (default: the preset's)"
    p.add_argument("--sampler", default=sampler, metavar=_one_of(list(samplers.SAMPLERS)),
                   help="sampler" + (preset if sampler is None else ""))
    p.add_argument("--steps", type=int, default=steps,
                   help="sampling steps, at most the model's training steps T" + (preset if steps is None else ""))


def _guidance(args: argparse.Namespace) -> Guidance:
    """The guidance spec of ``--rule``, ``--rule-args``, ``--interval`` and ``--schedule`` (at w = 0)."""
    from crossguide import conditions as C
    from crossguide.guidance import Guidance

    options = C.pairs(args.rule_args, "--rule-args", "name")
    interval = None
    if args.interval is not None:
        if len(args.interval) != 2:
            raise UsageError(f"--interval takes two noise levels LO,HI, got {args.interval}")
        interval = (args.interval[0], args.interval[1])
    kind, _, bounds = args.schedule.partition(":")
    extra = {}
    if bounds:
        try:
            lo_hi = _floats(bounds)
        except argparse.ArgumentTypeError as e:  # parsed here, not by argparse, which would add the option name
            raise UsageError(f"--schedule bounds: {e}") from None
        if len(lo_hi) != 2:
            raise UsageError(f"--schedule bounds must be SIGMA_MIN,SIGMA_MAX, got {bounds!r}")
        extra["schedule_range"] = (lo_hi[0], lo_hi[1])
    return Guidance(rule=args.rule, options=tuple(options), interval=interval,
                    schedule=kind.strip(), **extra)


def _data_args(p: argparse.ArgumentParser) -> None:
    """The modality and what ``train`` and ``bench`` read from it: dataset, data path, preset, seed."""
    from crossguide import registry

    p.add_argument("modality", metavar=_one_of(registry.names()), help="the modality")
    p.add_argument("--dataset", help="dataset name, one of the modality's (`crossguide list`; default: the "
                                     "modality's default)")
    p.add_argument("--data", type=path_arg, metavar="PATH", help="path of a folder or file dataset (folder, jsonl; "
                                                                 "default: none, the built-in datasets need none)")
    p.add_argument("--preset", default="quick", choices=PRESETS,
                   help="sizes of model, data, training and sampling: smoke runs in seconds, quick in minutes on "
                        "2 CPU cores, full at GPU scale")
    p.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {MAX_SEED}")
    model_args(p)


def model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--model-args``: the denoiser to train and its config (read by :func:`model_choice`)."""
    p.add_argument("--model", metavar="NAME", help="denoiser to train, one of the modality's (`crossguide list`); "
                                                   "default: the modality's own")
    p.add_argument("--model-args", default="", metavar="K=V,...",
                   help="the denoiser's config over the preset's, values as JSON, e.g. channels=32,mults=[1,2,2] "
                        "(default: none)")


def model_choice(modality: str, model: str | None, text: str, preset: str) -> tuple[str, dict[str, Any]]:
    """``--model`` and ``--model-args`` checked against the registry before anything loads: the denoiser's
    registered name and its ``--model-args`` (unknown names, options or a missing package: one-line errors)."""
    from crossguide import registry
    from crossguide.conditions import pairs

    m = registry.get(modality)
    name, entry = m.denoiser(model)
    options = {k: _json_value(v) for k, v in pairs(text, "--model-args", "option")}
    m.model_config(name, preset, options)
    entry.check_installed(f"{m.name}.{name}")
    return name, options


def _json_value(text: str) -> Any:
    """A ``--model-args`` value: JSON where it parses (numbers, lists, true/false), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("crossguide")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    """The ``crossguide`` parser: built without importing torch, so ``--help`` answers at once."""
    debug = _Parser(add_help=False)  # options valid before and after the subcommand; SUPPRESS keeps a value given
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,  # before it
                       help="show the traceback of an error instead of one line")
    debug.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                       help="CPU threads for torch (default: one per core); on a machine shared with other jobs "
                            "1 is often several times faster")
    ap = _Parser(prog="crossguide", description="classifier-free guidance across data types", parents=[debug],
                 formatter_class=_Help, epilog="`crossguide COMMAND --help` shows a command's options; "
                                               "`crossguide list` the modalities, guidance rules and samplers.")
    ap.add_argument("--version", action="version", version=f"crossguide {_version()}",
                    help="print the installed version and exit")
    # no set_defaults for --debug/--threads: the option objects are shared with every subcommand (parents=), so a
    # default set here would overwrite, in the subcommand's pass, a value given before the subcommand
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, parents=[debug], formatter_class=_Help)

    p = command("train", "train a denoiser into a checkpoint directory (resumes if it exists)")
    _data_args(p)
    p.add_argument("--out", type=path_arg, required=True, metavar="DIR",
                   help="checkpoint directory: new, empty, or a checkpoint to resume")
    p.add_argument("--steps", type=int, dest="train_steps", metavar="N", help="training steps (default: the preset's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="training batch (default: the preset's)")
    p.add_argument("--lr", type=float, metavar="LR", help="peak learning rate, in (0, 1] (default: the preset's)")
    p.add_argument("--p-uncond", type=float, metavar="P", help="probability of dropping the whole condition, in [0, 1] "
                                                  "(default: the preset's)")
    p.add_argument("--p-attr", type=float, metavar="P", help="probability of dropping each attribute, in [0, 1] "
                                                "(default: the preset's)")
    p.add_argument("--bf16", choices=("auto", "on", "off"),
                   help="bf16 autocast; auto: only where the hardware has bf16 units (default: the preset's)")
    p.add_argument("--device", type=_device, help="auto, cpu, cuda or cuda:N (default: the preset's)")

    p = command("sample", "sample a checkpoint with guidance")
    p.add_argument("--checkpoint", type=path_arg, required=True, metavar="DIR",
                   help="checkpoint directory (`crossguide train`)")
    p.add_argument("--cond", default="", metavar="A=V,...", help="requested condition, e.g. shape=circle,color=red "
                                                                 "(default: unconditional)")
    p.add_argument("--w", type=float, default=0.0,
                   help=f"guidance weight (the paper's w; 0: the conditional model), |w| <= {MAX_W:g}")
    p.add_argument("--compose", default="", metavar="A=W,...",
                   help="per-attribute weights instead of --w, e.g. shape=2,color=0.5; each attribute once, and set "
                        "in --cond (default: none)")
    p.add_argument("--negative", default="", metavar="A=V,...",
                   help="negative condition replacing the unconditional base (default: none)")
    _guidance_args(p)
    p.add_argument("--data", type=path_arg, metavar="PATH",
                   help="the dataset path, for rules that train on the data (classifier) (default: none, the "
                        "built-in datasets need none)")
    _sampler_args(p, sampler="ddim", steps=50)
    p.add_argument("--n", type=int, default=16, help=f"number of samples, 1 to {RANGES['n'][2]}")
    p.add_argument("--seed", type=int, default=0, help=f"random seed, 0 to {MAX_SEED}")
    p.add_argument("--no-snap", action="store_true", help="disable the model's snap/clamping step")
    p.add_argument("--out", type=path_arg, required=True, metavar="DIR", help="directory for the samples and grid.png")

    p = command("bench", "sweep guidance weights and evaluate")
    _data_args(p)
    p.add_argument("--w", type=_floats, metavar="W,...", help="comma-separated weights, each once and |w| <= "
                                             f"{MAX_W:g} (default: the rule's grid; for cfg the paper grid plus -1)")
    _guidance_args(p)
    p.add_argument("--out", type=path_arg, required=True, metavar="DIR",
                   help="directory for records, samples, plots and the model")
    p.add_argument("--checkpoint", type=path_arg, metavar="DIR",
                   help="reuse a trained model instead of training (default: train one into --out, or reuse a shipped "
                        "reference model)")
    _sampler_args(p, sampler=None, steps=None)
    p.add_argument("--force", action="store_true", help="recompute settings already recorded in --out")
    scratch_arg(p)

    command("list", "list modalities, their datasets and presets, the guidance rules and the samplers")
    for name, plugin in commands().items():
        p = command(name, plugin.help)
        plugin.add_arguments(p)
        p.set_defaults(plugin=plugin)
    return ap


class Command(Protocol):
    """A subcommand defined above core/ (the study, the reference models) or by another package, found through
    the ``crossguide.commands`` entry-point group as modalities and rules are: core never imports those layers."""

    help: str

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class _Broken:
    """An installed command that failed to load: running it says why, in one line."""

    def __init__(self, name: str, reason: str):
        self.help, self.reason, self.name = f"(failed to load: {reason})", reason, name

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise UsageError(f"command {self.name!r} is installed but failed to load ({self.reason})")


def commands() -> dict[str, Command]:
    """The installed ``crossguide.commands`` entry points, by name."""
    from crossguide.plugins import load_group

    found: dict[str, Command] = {}
    broken: dict[str, str] = {}
    load_group(COMMANDS, found.__setitem__, broken)
    return {**found, **{name: _Broken(name, why) for name, why in broken.items() if name not in found}}


def scratch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-scratch", action="store_true",
                   help="train every model and judge instead of using the shipped reference ones (`crossguide "
                        "reference list`); a --data dataset always trains its own")


def _arguments(argv: list[str]) -> list[str]:
    """``argv`` as argparse should see it: ``--w -1,0,2`` -> ``--w=-1,0,2`` (argparse would take a value starting
    with '-' for an option); ``--n=--`` is an error (argparse would drop the value '--' and keep the default)."""
    out: list[str] = []
    for arg in argv:
        name, _, value = arg.partition("=")
        if name.startswith("--") and value == "--":
            raise UsageError(f"{name} has no value ({arg!r})")
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-[\d.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(_arguments(argv))
        _check_ranges(args)
        _check_names(args)
        if getattr(args, "threads", None) is not None:
            import torch

            torch.set_num_threads(args.threads)
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted (checkpoints and finished settings are kept; rerun to resume)", file=sys.stderr)
        return 130
    except Exception as e:
        if "--debug" in argv:  # looked up in argv, not args: a parse error has no args
            raise
        status, message = _failure(e)
        print(f"error: {message}", file=sys.stderr)
        return status


def _failure(e: Exception) -> tuple[int, str]:
    """The exit status and one-line message for an exception that reached :func:`main`: 2 for the user's
    mistakes (a :class:`UsageError`; a file that cannot be read or written; a value a parser rejected), 1 for
    anything else, a bug."""
    text = " ".join(str(e).split()) or e.__class__.__name__  # one line, whatever the message holds
    if isinstance(e, OSError):
        return 2, describe_os_error(e)
    if isinstance(e, ValueError):  # UsageError and its subclasses, UnicodeError, JSONDecodeError, int("x")
        return 2, text
    if isinstance(e, MemoryError):
        return 1, "out of memory; ask for fewer samples or a smaller batch"
    return 1, f"internal error ({e.__class__.__name__}: {text}); rerun with --debug for the traceback"


def _check_ranges(args: argparse.Namespace) -> None:
    """Every numeric option given must lie in its :data:`RANGES` (a list, such as bench's ``--w``, item by item,
    each once)."""
    for dest, (option, lo, hi, open_lo) in RANGES.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [] if value is None else [value]
        for v in values:
            check_range(option, v, lo, hi, open_lo=open_lo)
        if len(set(values)) < len(values):
            raise UsageError(f"{option} lists a value twice: {','.join(f'{v:g}' for v in values)}")


def _check_names(args: argparse.Namespace) -> None:
    """Every name given (modality, dataset, guidance rule, sampler) is one its registry knows: checked right after
    parsing, before torch or any model loads. The error lists the valid names, or says why a plug-in of that name
    failed to load."""
    from crossguide import registry, rules, samplers

    if getattr(args, "modality", None) is not None:
        modality = registry.get(args.modality)
        if getattr(args, "dataset", None) is not None:
            check_choice(f"{modality.name} dataset", args.dataset, modality.datasets)
    if getattr(args, "rule", None) is not None:
        rules.get(args.rule)
    if getattr(args, "sampler", None) is not None:
        samplers.get(args.sampler)


def parse_names(text: str, option: str, what: str, valid: Sequence[str]) -> list[str]:
    """A comma-separated list of ``what`` names (e.g. modalities) from ``valid``, at least one, each once."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"{option} is empty; valid: {', '.join(valid)}")
    for name in names:
        check_choice(what, name, valid)
        if names.count(name) > 1:
            raise UsageError(f"{option} lists {what} {name!r} twice")
    return names


def check_out(path: Path) -> None:
    """Fail before any work unless ``--out`` can be a directory this command writes in: not an existing
    file (it is left as it is), and new or existing inside a directory this process may write."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {str(path)!r} is an existing file, not a directory; give a directory "
                         "(the file is left as it is)")
    parent = path
    while not parent.exists():  # the nearest existing directory, where mkdir will start
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {str(path)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(path)!r} cannot be written: {str(parent)!r} is read-only for this user")


def _check_checkpoint_target(path: Path) -> None:
    """``path`` may receive a checkpoint (:func:`crossguide.checkpoint.check_target`) and be written."""
    from crossguide import checkpoint as ckpt

    check_out(path)
    ckpt.check_target(path)


def check_json_object(path: Path) -> None:
    """A results file this command reads back (``summary.json``, ``study.json``) is a JSON object if present,
    checked before any work rather than after it."""
    if not path.exists():
        return
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{str(path)!r} is not valid JSON ({e.__class__.__name__}); delete it or use another "
                         "--out") from e
    if not isinstance(value, dict):
        raise UsageError(f"{str(path)!r} holds a JSON {type(value).__name__}, not an object; delete it or use "
                         "another --out")


def _list() -> None:
    """``crossguide list``: the modalities with their datasets and presets, the guidance rules with their options,
    the samplers; read from the registries without loading torch."""
    from crossguide import registry, rules, samplers

    for name in registry.names():
        m = registry.get(name)
        print(f"{name}: datasets {', '.join(m.datasets)} (default {m.default_dataset}); "
              f"presets {', '.join(m.presets)}; denoisers (--model) {', '.join(m.denoisers)} "
              f"(default {m.default_denoiser})")
    for name in rules.names():
        rule = rules.make(name)
        options = ", ".join(f"{k}={v}" for k, v in rule.options().items()) or "no options"
        print(f"rule {name}: {options}; acts in: {rule.acts_in()}")
    print(f"samplers: {', '.join(samplers.SAMPLERS)}")


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        _list()
        return 0
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if getattr(args, "from_scratch", False):
        from crossguide import reference

        with reference.disabled():
            return _run_command(args)
    return _run_command(args)


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "bench":
        from crossguide.bench import bench, table

        guidance = _guidance(args)
        denoiser, options = _check_bench(args)
        recs = bench(args.modality, out=args.out, dataset=args.dataset, data=args.data, preset=args.preset,
                     ws=args.w, seed=args.seed, checkpoint=args.checkpoint, sampler=args.sampler,
                     steps=args.steps, guidance=guidance, force=args.force, denoiser=denoiser, model_args=options)
        print(table(recs))
        print(f"records: {args.out / 'records.jsonl'}  plots: {args.out / 'plots'}")
        return 0
    if getattr(args, "plugin", None) is not None:
        return args.plugin.run(args)
    raise AssertionError(args.command)


def _check_bench(args: argparse.Namespace) -> tuple[str | None, dict[str, Any]]:
    """What ``bench`` can check before training or sampling: its output folder, the denoiser it trains or the
    checkpoint it reuses (and where it trains one) and that ``--steps`` fits the model's noise schedule; returns
    the denoiser to train and its ``--model-args``."""
    from crossguide import registry
    from crossguide.pipeline import load_model
    from crossguide.schedules import respace

    modality = registry.get(args.modality)
    if args.checkpoint is not None and (args.model or args.model_args):
        raise UsageError("--model and --model-args choose a denoiser to train; --checkpoint already holds one "
                         "(drop one of them)")
    denoiser, options = model_choice(args.modality, args.model, args.model_args, args.preset)
    check_out(args.out)
    check_json_object(args.out / "summary.json")
    if args.checkpoint is None:
        _check_checkpoint_target(args.out / "model")
        schedule = modality.schedule(modality.preset(args.preset))
    else:
        _, schedule, _ = load_model(args.checkpoint)
    if args.steps is not None:
        respace(schedule, args.steps)
    return denoiser, options


def _train(args: argparse.Namespace) -> int:
    from crossguide import registry
    from crossguide.trainer import train

    denoiser, options = model_choice(args.modality, args.model, args.model_args, args.preset)
    _check_checkpoint_target(args.out)
    modality = registry.get(args.modality)
    spec = modality.preset(args.preset)
    overrides = {k: v for k, v in {
        "steps": args.train_steps, "batch_size": args.batch_size, "lr": args.lr, "p_uncond": args.p_uncond,
        "p_attr": args.p_attr, "bf16": args.bf16, "device": args.device, "seed": args.seed,
    }.items() if v is not None}
    config = replace(modality.train_config(denoiser, args.preset), **overrides)
    splits = modality.load_dataset(args.dataset, args.preset, args.data, args.seed)
    model = modality.init_model(spec, splits.train, config.seed, denoiser=denoiser,
                                config=modality.model_config(denoiser, args.preset, options))
    dataset = args.dataset or modality.default_dataset
    meta = {"modality": modality.name, "dataset": dataset, "preset": args.preset, "data_info": splits.train.info,
            **registry.denoiser_record(modality, denoiser)}
    result = train(model, modality.schedule(spec), splits.train, config, out=args.out, meta=meta,
                   desc=f"train {modality.name} ({dataset}, {args.preset})")
    print(json.dumps({"checkpoint": str(args.out), "step": result.step, **result.stats}))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from crossguide.conditions import pairs
    from crossguide.notebook import Pipe

    template = _guidance(args)  # a bad rule or option fails before the model loads
    check_out(args.out)
    compose = {}
    for name, text in pairs(args.compose, "--compose", "attribute"):
        try:
            compose[name] = float(text)
        except ValueError:
            raise UsageError(f"--compose weight for {name!r} is not a number: {text!r}") from None
    pipe = Pipe(args.checkpoint, args.data)
    choice = pipe.condition(args.cond, "--cond")
    guidance = replace(template, terms=pipe.terms(args.w, compose, choice))
    out = pipe.generate(choice, guidance, n=args.n, seed=args.seed, negative=args.negative, sampler=args.sampler,
                        steps=args.steps, snap=not args.no_snap, progress=True, what=args.cond)
    out.save(args.out)
    print(f"wrote {len(out)} samples to {args.out} ({out.nfe:.0f} network evaluations per sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
