"""The ``crossguide`` subcommands defined above core: ``study`` and ``reference``, installed through the
``crossguide.commands`` entry points (:class:`crossguide.cli.Command`; core never imports this layer).

This module is free of torch: ``crossguide --help`` and ``crossguide study --help`` read it, and every argument
check of these commands answers before torch loads. Running a command imports its work,
:mod:`crossguide.benchmarks.study` or :mod:`crossguide.benchmarks.references`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crossguide.benchmarks import MODALITIES
from crossguide.cli import check_json_object, check_out, model_choice, parse_names, path_arg, scratch_arg
from crossguide.errors import UsageError
from crossguide.registry import PRESETS


class StudyCommand:
    """``crossguide study``: the cross-modality guidance study (:func:`crossguide.benchmarks.study.run_study`)."""

    help = "the cross-modality guidance study and its report"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default="quick", choices=PRESETS,
                       help="the study's plan and the models' sizes: smoke runs in about a minute on barely "
                            "trained models (a check that everything runs: its numbers mean nothing), quick in "
                            "about 13 minutes on 2 CPU cores, full at GPU scale")
        from crossguide import registry, rules

        p.add_argument("--modalities", metavar="NAME,...", help=f"comma-separated modalities, from "
                       f"{', '.join(registry.names())} (default: the study's set)")
        p.add_argument("--seeds", type=int, metavar="N",
                       help="sampling seeds per setting (mean and 95%% CI; default: the preset's, smoke 1, quick 2, "
                            "full 3)")
        p.add_argument("--training-seeds", type=int, default=1, metavar="N",
                       help="train N models per modality (training seeds 0..N-1; seed 0 is the reference model) and "
                            "run the sweep on each, for the between-model spread (default: 1)")
        p.add_argument("--rules", metavar="NAME,...", help=f"comma-separated guidance rules for the rules section, "
                       f"from {', '.join(rules.names())} (default: every one)")
        p.add_argument("--model", metavar="MODALITY.NAME,...",
                       help="denoisers to train instead of the modalities' own, e.g. image.diffusers-unet "
                            "(`crossguide list`; default: each modality's own)")
        p.add_argument("--model-args", default="", metavar="K=V,...",
                       help="config of the one denoiser --model names, values as JSON (default: its preset's)")
        p.add_argument("--out", type=path_arg, default=Path("results/study"), metavar="DIR",
                       help="directory for the models, records, samples and the report")
        p.add_argument("--force", action="store_true", help="retrain models and recompute settings found in --out")
        scratch_arg(p)

    def run(self, args: argparse.Namespace) -> int:
        from crossguide import registry, rules

        check_out(args.out)
        if not args.force:
            check_json_object(args.out / "study.json")
        chosen: dict[str, Any] = {}
        if args.modalities is not None:
            chosen["modalities"] = parse_names(args.modalities, "--modalities", "modality", registry.names())
        if args.rules is not None:
            chosen["rule_names"] = parse_names(args.rules, "--rules", "guidance rule", rules.names())
        if args.model is not None or args.model_args:
            chosen["denoisers"] = _denoisers(args)
            left_out = [m for m in chosen["denoisers"] if m not in chosen.get("modalities", MODALITIES)]
            if left_out:
                raise UsageError(f"--model names a {left_out[0]} denoiser, but the study does not run {left_out[0]} "
                                 f"(--modalities: {', '.join(chosen.get('modalities', MODALITIES))})")
        from crossguide.benchmarks.study import run_study

        report = run_study(args.out, preset=args.preset, seeds=args.seeds, training_seeds=args.training_seeds,
                           force=args.force, **chosen)
        print(f"report: {report}  (and {report.with_suffix('.md')})")
        return 0


def _denoisers(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any]]]:
    """``--model image.x,audio.y`` (and ``--model-args`` for a single one) as modality -> (denoiser, its
    config options), each checked against the registry before anything trains."""
    names = [n.strip() for n in (args.model or "").split(",") if n.strip()]
    if args.model_args and len(names) != 1:
        raise UsageError(f"--model-args configures one denoiser; --model names {len(names)} "
                         f"({args.model or 'none'}): give exactly one")
    chosen = {}
    for name in names:
        modality, dot, _ = name.partition(".")
        if not dot:
            raise UsageError(f"--model {name!r}: the study runs several modalities, so name the denoiser as "
                             "MODALITY.NAME, e.g. image.diffusers-unet")
        if modality in chosen:
            raise UsageError(f"--model gives modality {modality!r} twice; give one denoiser per modality")
        chosen[modality] = model_choice(modality, name, args.model_args, args.preset)
    return chosen


class ReferenceCommand:
    """``crossguide reference list|verify|build|rescore``: the shipped reference models and judges
    (:mod:`crossguide.benchmarks.references`)."""

    help = "list, verify or rebuild the shipped reference models and judges"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("action", choices=("list", "verify", "build", "rescore"),
                       help="list: name, kind, size, training time and id of each; verify: every file against the "
                            "index; build: train from scratch and export; rescore: measure the named denoisers' card "
                            "tables again with the current judges")
        p.add_argument("names", nargs="*", help="artifacts to rebuild or rescore (default: every one of "
                                                "--modalities)")
        p.add_argument("--modalities", metavar="NAME,...",
                       help="build, rescore: comma-separated modalities whose artifacts to rebuild or rescore "
                            "(default: the study's)")
        p.add_argument("--preset", default="quick", choices=PRESETS, help="build: the preset the artifacts are of")
        p.add_argument("--no-quality", action="store_true", help="build: skip the bench sweep written to each "
                                                                 "denoiser's model card")

    def run(self, args: argparse.Namespace) -> int:
        jobs = _jobs(args.names, args.modalities) if args.action in ("build", "rescore") else {}
        from crossguide.benchmarks import references as R

        if args.action == "list":
            print(R.list_table())
            return 0
        if args.action == "verify":
            lines = R.verify_all()
            print("\n".join(lines) or "no reference artifacts")
            return 1 if any(line.startswith("FAILED") for line in lines) else 0
        if args.action == "rescore":
            from crossguide import reference

            names = args.names or [a.name for a in reference.artifacts()
                                   if a.entry["kind"] == "denoiser" and _owner(a.name) in jobs]
            print(f"rescored {', '.join(R.rescore(names))}")
        else:
            for modality, names in jobs.items():
                made = R.build(modality, preset=args.preset, names=names or None, quality=not args.no_quality)
                print(f"{modality}: built {', '.join(made) or 'nothing'}")
        print(R.list_table())
        return 0


def _jobs(names: list[str], modalities: str | None) -> dict[str, list[str]]:
    """``reference build|rescore``'s work by modality: the artifacts ``names`` grouped by the modality that ships
    them, or every artifact (an empty list) of each of ``--modalities`` (default: the study's)."""
    if modalities is not None and names:
        raise UsageError("give artifact names or --modalities, not both")
    if names:
        return {m: [n for n in names if _owner(n) == m] for m in dict.fromkeys(map(_owner, names))}
    return {m: [] for m in (MODALITIES if modalities is None else
                            parse_names(modalities, "--modalities", "modality", MODALITIES))}


def _owner(name: str) -> str:
    """The modality whose package ships (or will ship) artifact ``name`` (``KIND-MODALITY-...``)."""
    from crossguide import registry

    parts = name.split("-")
    if len(parts) < 2 or parts[1] not in registry.names():
        raise UsageError(f"reference name {name!r} is not KIND-MODALITY-...; valid modalities: "
                         f"{', '.join(registry.names())}")
    return parts[1]


STUDY = StudyCommand()
REFERENCE = ReferenceCommand()
