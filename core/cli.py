"""The ``crossguide`` command line: a thin layer over :mod:`core.pipeline`, :mod:`core.bench` and the study.

User mistakes (unknown names, bad values, bad files) print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from core import conditions as C
from core.errors import UsageError
from core.guidance import Guidance, Term
from core.registry import PRESETS


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _guidance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", default="cfg", help="guidance rule (see `crossguide list`); default cfg")
    p.add_argument("--rule-args", default="", metavar="K=V,...", help="the rule's options, e.g. eta=0,r=15")
    p.add_argument("--interval", type=_floats, metavar="LO,HI",
                   help="guide only at noise levels sigma = sqrt((1 - alpha_bar) / alpha_bar) in [LO, HI]")
    p.add_argument("--schedule", default="constant", metavar="KIND[:SMIN,SMAX]",
                   help="weight schedule over the noise level: constant, linear or cosine (rising as noise falls, "
                        "averaging w over log sigma in [SMIN, SMAX], default 0.01,100)")


def _guidance(args: argparse.Namespace) -> Guidance:
    """The guidance spec of ``--rule``, ``--rule-args``, ``--interval`` and ``--schedule`` (at w = 0)."""
    options = {}
    for part in filter(None, (p.strip() for p in args.rule_args.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--rule-args part {part!r} is not of the form name=value")
        options[name.strip()] = value.strip()
    interval = None
    if args.interval is not None:
        if len(args.interval) != 2:
            raise UsageError(f"--interval takes two noise levels LO,HI, got {args.interval}")
        interval = (args.interval[0], args.interval[1])
    kind, _, bounds = args.schedule.partition(":")
    extra = {}
    if bounds:
        lo_hi = _floats(bounds)
        if len(lo_hi) != 2:
            raise UsageError(f"--schedule bounds must be SIGMA_MIN,SIGMA_MAX, got {bounds!r}")
        extra["schedule_range"] = (lo_hi[0], lo_hi[1])
    return Guidance(rule=args.rule, options=tuple(options.items()), interval=interval,
                    schedule=kind.strip(), **extra)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("modality", help="a registered modality (see `crossguide list`)")
    p.add_argument("--dataset", help="dataset name (default: the modality's default)")
    p.add_argument("--data", type=Path, help="path for folder/file datasets")
    p.add_argument("--preset", default="quick", choices=PRESETS)
    p.add_argument("--seed", type=int, default=0)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="crossguide", description="classifier-free guidance across data types")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a denoiser into a checkpoint directory (resumes if it exists)")
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--p-uncond", type=float)
    p.add_argument("--p-attr", type=float)
    p.add_argument("--bf16", choices=("auto", "on", "off"))
    p.add_argument("--device")

    p = sub.add_parser("sample", help="sample a checkpoint with guidance")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--cond", default="", help="requested condition, e.g. shape=circle,color=red")
    p.add_argument("--w", type=float, default=0.0, help="guidance weight (paper's w; w=0 conditional)")
    p.add_argument("--compose", default="", help="per-attribute weights instead of --w, e.g. shape=2,color=0.5")
    p.add_argument("--negative", default="", help="negative condition replacing the unconditional base")
    _guidance_args(p)
    p.add_argument("--data", type=Path, help="the dataset path, for rules that train on the data (classifier)")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-snap", action="store_true", help="disable the model's snap/clamping step")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("bench", help="sweep guidance weights and evaluate")
    _data_args(p)
    p.add_argument("--w", type=_floats, help="comma-separated weights (default: the rule's grid; for cfg the "
                                             "paper grid plus -1)")
    _guidance_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, help="reuse a trained model instead of training")
    p.add_argument("--sampler")
    p.add_argument("--steps", type=int)
    p.add_argument("--force", action="store_true", help="recompute settings already recorded in --out")
    _scratch_arg(p)

    p = sub.add_parser("study", help="the cross-modality guidance study and its report")
    p.add_argument("--preset", default="quick", choices=PRESETS)
    p.add_argument("--modalities", help="comma-separated modality names (default: the study's built-in set)")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per setting (mean and 95%% CI)")
    p.add_argument("--rules", help="comma-separated guidance rules for the rules section (default: every "
                                   "registered rule)")
    p.add_argument("--out", type=Path, default=Path("results/study"))
    p.add_argument("--force", action="store_true", help="retrain models and recompute settings found in --out")
    _scratch_arg(p)

    p = sub.add_parser("reference", help="list, verify or rebuild the shipped reference models and judges")
    p.add_argument("action", choices=("list", "verify", "build"))
    p.add_argument("names", nargs="*", help="artifacts to rebuild (build; default: every one of --modalities)")
    p.add_argument("--modalities", help="build: comma-separated modalities whose artifacts to rebuild")
    p.add_argument("--preset", default="quick", choices=PRESETS)
    p.add_argument("--no-quality", action="store_true", help="build: skip the bench sweep written to each "
                                                             "denoiser's model card")

    sub.add_parser("list", help="list modalities, their datasets and presets, and the guidance rules")
    return ap


def _scratch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-scratch", action="store_true",
                   help="train every model and judge instead of using the shipped reference ones (`crossguide "
                        "reference list`); a --data dataset always trains its own")


def _glue_negative_values(argv: list[str]) -> list[str]:
    """``--w -1,0,2`` -> ``--w=-1,0,2``: argparse would take a value starting with '-' for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-[\d.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(_glue_negative_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return _run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (checkpoints and finished settings are kept; rerun to resume)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from core import registry

    if args.command == "list":
        from core import rules

        for name in registry.names():
            m = registry.get(name)
            print(f"{name}: datasets {', '.join(m.datasets)} (default {m.default_dataset}); "
                  f"presets {', '.join(m.presets)}")
        for name in rules.names():
            rule = rules.make(name)
            options = ", ".join(f"{k}={v}" for k, v in rule.options().items()) or "no options"
            print(f"rule {name}: {options}; acts in: {rule.acts_in()}")
        return 0
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "reference":
        return _reference(args)
    if getattr(args, "from_scratch", False):
        from core import reference

        with reference.disabled():
            return _run_command(args)
    return _run_command(args)


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "bench":
        from core.bench import bench, table

        recs = bench(args.modality, out=args.out, dataset=args.dataset, data=args.data, preset=args.preset,
                     ws=args.w, seed=args.seed, checkpoint=args.checkpoint, sampler=args.sampler,
                     steps=args.steps, guidance=_guidance(args), force=args.force)
        print(table(recs))
        print(f"records: {args.out / 'records.jsonl'}  plots: {args.out / 'plots'}")
        return 0
    if args.command == "study":
        from benchmarks.study import run_study

        chosen = {} if args.modalities is None else {
            "modalities": [m.strip() for m in args.modalities.split(",") if m.strip()]}
        if args.rules is not None:
            chosen["rule_names"] = [r.strip() for r in args.rules.split(",") if r.strip()]
        report = run_study(args.out, preset=args.preset, seeds=args.seeds, force=args.force, **chosen)
        print(f"report: {report}  (and {report.with_suffix('.md')})")
        return 0
    raise AssertionError(args.command)


def _reference(args: argparse.Namespace) -> int:
    from benchmarks import references

    if args.action == "list":
        print(references.list_table())
        return 0
    if args.action == "verify":
        lines = references.verify_all()
        print("\n".join(lines) or "no reference artifacts")
        return 1 if any(line.startswith("FAILED") for line in lines) else 0
    if args.modalities is not None and args.names:
        raise UsageError("give artifact names or --modalities, not both")
    if args.names:
        jobs = {m: [n for n in args.names if references.owner(n) == m] for m in dict.fromkeys(map(
            references.owner, args.names))}
    else:
        from benchmarks.study import MODALITIES

        chosen = MODALITIES if args.modalities is None else [m.strip() for m in args.modalities.split(",")]
        jobs = {m: None for m in chosen}
    for modality, names in jobs.items():
        made = references.build(modality, preset=args.preset, names=names, quality=not args.no_quality)
        print(f"{modality}: built {', '.join(made) or 'nothing'}")
    print(references.list_table())
    return 0


def _train(args: argparse.Namespace) -> int:
    from core import registry
    from core.trainer import train

    modality = registry.get(args.modality)
    spec = modality.preset(args.preset)
    overrides = {k: v for k, v in {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "p_uncond": args.p_uncond,
        "p_attr": args.p_attr, "bf16": args.bf16, "device": args.device, "seed": args.seed,
    }.items() if v is not None}
    config = replace(spec.train, **overrides)
    splits = modality.load_dataset(args.dataset, args.preset, args.data, args.seed)
    model = modality.init_model(spec, splits.train, config.seed)
    dataset = args.dataset or modality.default_dataset
    meta = {"modality": modality.name, "dataset": dataset, "preset": args.preset, "data_info": splits.train.info}
    result = train(model, modality.schedule(spec), splits.train, config, out=args.out, meta=meta)
    print(json.dumps({"checkpoint": str(args.out), "step": result.step, **result.stats}))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from core import registry
    from core.pipeline import helper_models, load_model
    from core.sampling import generate

    template = _guidance(args)  # a bad rule or option fails before the model loads
    model, schedule, config = load_model(args.checkpoint)
    attrs = model.attributes
    choice = C.parse(args.cond, attrs)
    terms: tuple[Term, ...] = (Term(args.w),)
    if args.compose:
        parts = []
        for part in args.compose.split(","):
            name, _, w = part.partition("=")
            if name not in attrs:
                raise UsageError(f"unknown attribute {name!r} in --compose; valid: {', '.join(attrs)}")
            try:
                parts.append(Term(float(w), (name,)))
            except ValueError as e:
                raise UsageError(f"--compose weight for {name!r} is not a number: {w!r}") from e
        terms = tuple(parts)
    guidance = replace(template, terms=terms)
    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    cond = C.stack([choice] * args.n, attrs)
    negative = C.stack([C.parse(args.negative, attrs)] * args.n, attrs) if args.negative else None
    modality = registry.get(config["modality"])
    preset = config.get("preset", "quick")
    built = helper_models(guidance.make_rule().helpers, modality=modality, dataset=config.get("dataset", ""),
                          preset_name=preset, model=model, schedule=schedule, model_dir=args.checkpoint,
                          splits=lambda: modality.load_dataset(config.get("dataset"), preset, args.data, 0))
    gen = generate(model, schedule, cond, guidance, sampler=args.sampler, steps=args.steps, seed=args.seed,
                   negative=negative, snap=not args.no_snap, helpers={k: m for k, (m, _) in built.items()},
                   progress=True)
    labels = [C.names(choice, attrs)] * args.n
    info = config.get("data_info", {})
    paths = modality.write_samples(gen.samples, labels, args.out, info)
    modality.draw(gen.samples, labels, args.out / "grid.png",
                  f"{args.cond or 'unconditional'}: {guidance.terms_label()} ({guidance.label()})", info)
    print(f"wrote {len(paths)} samples to {args.out} ({gen.nfe:.0f} network evaluations per sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
