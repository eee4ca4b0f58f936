"""What guidance costs per sampling step, as ratios to the unguided conditional model.

``python -m crossguide.benchmarks.guidance_cost --modality toy --preset quick --batch 256 --out DIR`` times one guided
prediction (the work of one sampler step) for: the unguided conditional model, CFG with both branches in one
batched forward, CFG as two separate passes, compositions of 2 and 3 terms (3 and 4 branches), and the rules
that cost more than a combination: APG, autoguidance (a second network) and classifier guidance (a classifier's
forward and backward pass, with the preset's noise-classifier architecture). A denoiser that declares
``shared_branches`` (DiffWave) gets x_t once for all branches in the batched variants, as in sampling.
Calls are interleaved (each round runs every variant once, in a seeded random order) and two ratios to the unguided
model are reported: of the medians, and the median of each round's own ratio (with its quartiles), which load that
comes and goes between rounds does not move; each variant's denoiser forwards per step (and the rows they evaluate)
are counted too. Results are printed and appended to ``DIR/guidance_cost.jsonl``. Weights are random unless
``--checkpoint`` is given: the cost of a forward does not depend on them.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from crossguide import conditions as C
from crossguide import records
from crossguide.classifier import NoiseClassifier
from crossguide.denoiser import Denoiser
from crossguide.errors import UsageError
from crossguide.guidance import Guidance, Guided, Term
from crossguide.pipeline import load_model
from crossguide.registry import get as get_modality
from crossguide.samplers import Step
from crossguide.schedules import Schedule


def variants(attributes: list[str], batch: int) -> dict[str, Guidance]:
    """The guidance variants to time; compositions use single attributes, then the full condition, as terms."""
    pool = [(a,) for a in attributes] + [None, None]
    return {
        "unguided": Guidance.cfg(0.0),  # w = 0: only the conditional branch is evaluated
        "cfg_batched": Guidance.cfg(3.0),
        "cfg_separate": Guidance.cfg(3.0, chunk=batch),  # one forward per branch
        "compose_2": Guidance(terms=tuple(Term(1.0, pool[i]) for i in range(2))),
        "compose_3": Guidance(terms=tuple(Term(1.0, pool[i]) for i in range(3))),
        "apg": Guidance.single(3.0, "apg", {"momentum": -0.5}),
        "auto": Guidance.single(3.0, "auto"),
        "classifier": Guidance.single(3.0, "classifier"),
    }


def forwards(model: Denoiser, call: Any) -> list[int]:
    """The batch size of every forward of ``model`` during ``call()``: what a variant evaluates per step."""
    seen: list[int] = []
    handle = model.register_forward_hook(lambda _module, _inputs, output: seen.append(int(output.shape[0])))
    try:
        call()
    finally:
        handle.remove()
    return seen


class Cost(NamedTuple):
    """One variant's timing: the median seconds per guided prediction; the median and quartiles over rounds of its
    time divided by the unguided model's in the same round (paired: load that comes and goes hits both alike);
    the batch sizes of the denoiser's forwards in one prediction."""

    seconds: float
    paired: float
    paired_iqr: tuple[float, float]
    sizes: list[int]


@torch.no_grad()
def measure(model: Denoiser, schedule: Schedule, batch: int, repeats: int, helpers: dict[str, Any],
            seed: int = 0) -> dict[str, Cost]:
    """Every variant's :class:`Cost` (``helpers``: the classifier and weak model; the weak model's forwards are not
    counted). Each round runs every variant once in a seeded random order, so no variant always follows the same
    one (a large variant leaves caches and the allocator in another state for the next)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *model.sample_shape), generator=g)
    t = torch.full((batch,), float(schedule.T // 2))
    step = Step(t, schedule.at(t.long()).double(), 0, 1)
    full = C.all_choices(model.attributes)
    cond = C.stack([full[i % len(full)] for i in range(batch)], model.attributes)
    fns: dict[str, Any] = {name: Guided(model, spec, cond, helpers=helpers)
                           for name, spec in variants(list(model.attributes), batch).items()}
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats + 2):
        for i in torch.randperm(len(names), generator=g).tolist():
            start = time.perf_counter()
            fns[names[i]](x, step, None)
            if r >= 2:  # the first rounds warm up allocators and kernels
                times[names[i]].append(time.perf_counter() - start)
    out = {}
    for name, v in times.items():
        ratios = sorted(a / b for a, b in zip(v, times["unguided"], strict=True))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        out[name] = Cost(statistics.median(v), quartiles[1], (quartiles[0], quartiles[2]),
                         forwards(model, lambda fn=fns[name]: fn(x, step, None)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", default="toy")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument("--out", type=Path, default=Path("results/guidance_cost"))
    args = ap.parse_args(argv)
    try:
        if args.batch < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
            raise UsageError(f"--batch, --repeats and --threads must be >= 1, got {args.batch}, {args.repeats} "
                             f"and {args.threads}")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        modality = get_modality(args.modality)
        if args.checkpoint is not None:
            model, schedule, config = load_model(args.checkpoint)
            model_id, info = str(args.checkpoint), config.get("data_info", {})
            spec = modality.preset(config.get("preset", args.preset))
        else:
            spec = modality.preset(args.preset)
            splits = modality.load_dataset(None, args.preset, None, 0)
            model, info = modality.init_model(spec, splits.train, 0).eval(), splits.train.info
            schedule, model_id = modality.schedule(spec), f"{args.modality}/{args.preset} (random weights)"
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shape = tuple(model.sample_shape)
    backbone, dim = modality.classifier_backbone(spec.classifier, info, shape)
    helpers = {"weak": copy.deepcopy(model),
               "classifier": NoiseClassifier(backbone, dim, model.attributes, shape, {}).eval()}
    result = measure(model, schedule, args.batch, args.repeats, helpers)
    base = result["unguided"].seconds
    params = sum(p.numel() for p in model.parameters())
    print(f"{model_id}: {params:,} parameters, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.repeats} rounds")
    print(f"{'variant':>14} {'ms/step':>10} {'x unguided':>11} {'paired x (IQR)':>22} {'forwards':>9} {'rows':>6}")
    rows = []
    for name, cost in result.items():
        lo, hi = cost.paired_iqr
        print(f"{name:>14} {1000 * cost.seconds:10.2f} {cost.seconds / base:11.2f} "
              f"{f'{cost.paired:.2f} ({lo:.2f}-{hi:.2f})':>22} {len(cost.sizes):>9} {sum(cost.sizes):>6}")
        rows.append({"modality": args.modality, "model": model_id, "parameters": params, "batch": args.batch,
                     "variant": name, "seconds_per_step": cost.seconds, "ratio_to_unguided": cost.seconds / base,
                     "paired_ratio": cost.paired, "paired_ratio_iqr": list(cost.paired_iqr),
                     "forwards": len(cost.sizes), "rows": sum(cost.sizes), "threads": torch.get_num_threads(),
                     "repeats": args.repeats})
    records.write_jsonl(args.out / "guidance_cost.jsonl", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
