"""crossguide's sampler and guidance against a plain diffusers loop on the same ``UNet2DModel`` weights (issue 15).

``python -m crossguide.benchmarks.vs_diffusers [--checkpoint DIR] [--preset quick] [--steps 20] [--batch 16]
[--w 3] [--reps 5] [--threads 1] [--spacing trailing] [--out results/vs_diffusers/record.json]``

Both sides sample one network, the ``diffusers-unet`` adapter's ``UNet2DModel`` (a trained checkpoint's, or a
fresh one drawn from ``--seed`` whose output layer and condition tables are not left near zero, so that guidance
changes the samples), from the same initial noise, with deterministic DDIM (Song et al. 2021, Eq. 12, eta = 0)
and classifier-free guidance (Ho & Salimans 2021, Eq. 6; crossguide's ``w`` is diffusers' ``guidance_scale - 1``):

* crossguide: :func:`crossguide.sampling.generate` with ``sampler="ddim"`` and ``Guidance.cfg(w)``;
* diffusers: a pipeline's loop over ``DDIMScheduler`` (crossguide's noise schedule as ``trained_betas``,
  ``set_alpha_to_one=True`` so the last step lands on clean data as crossguide's does), the conditional and
  unconditional inputs batched into one forward, ``uncond + guidance_scale (cond - uncond)``, ``scheduler.step``.
  The condition embeddings (the adapter's ``class_labels``) are computed once before the loop, as pipelines
  encode their prompt once.

Snapping: the adapter's ``snap`` clamps ``x0`` to ``[-1, 1]`` and re-derives ``eps`` from it, which is
``clip_sample=True`` with ``use_clipped_model_output=True`` in ``DDIMScheduler``; ``--no-snap`` turns both off.

Timestep grids: crossguide respaces ``S`` steps as ``round(linspace(T - 1, 0, S))``. ``DDIMScheduler``'s
``timestep_spacing="linspace"`` visits exactly those timesteps, but its ``step`` always moves to
``t - T // S`` (a fixed stride), not to the next visited timestep, so with ``T = 1000`` the two trajectories
differ at every ``S < T``. Its ``"leading"`` and ``"trailing"`` spacings are fixed strides, consistent with that
move; for those the benchmark gives crossguide the scheduler's timesteps as the schedule's predefined grid for
``S`` steps (:attr:`crossguide.schedules.Schedule.grids`, the mechanism DiffWave's fast schedule uses), so both
sides visit the same noise levels. ``"trailing"`` (the default) starts at ``T - 1`` like crossguide's own grid
(Lin et al. 2024, Table 2). Both sides run on the same threads, batch and steps, interleaved (the order
alternating), and the medians are reported with the ratio crossguide / diffusers (target >= 0.95) and the largest
absolute difference between the two sample sets (target <= 1e-4). On a shared machine the wall-clock medians move
with other processes' load, so the process's CPU time and the median of each repetition's own ratio are reported
too. A JSON record goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from crossguide import conditions as C
from crossguide.conditions import Condition
from crossguide.errors import UsageError, check_choice
from crossguide.guidance import Guidance
from crossguide.registry import get as get_modality
from crossguide.sampling import generate
from crossguide.schedules import Schedule, respace

Spacing = Literal["linspace", "leading", "trailing"]
SPACINGS: tuple[Spacing, ...] = ("linspace", "leading", "trailing")
DENOISER = "diffusers-unet"
TARGET_RATIO, TARGET_DIFF = 0.95, 1e-4


def scheduler(schedule: Schedule, spacing: Spacing, steps: int, *, snap: bool = True) -> Any:
    """A ``DDIMScheduler`` on ``schedule``'s noise levels (``trained_betas`` from its ``alpha_bar`` table) with
    ``steps`` timesteps set by ``spacing``; it clips ``x0`` like the adapter's snap when ``snap``."""
    from diffusers import DDIMScheduler

    check_choice("timestep spacing", spacing, SPACINGS)
    ab = schedule.alpha_bar
    betas = 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])  # alpha_bar_t = prod_{s<=t} (1 - beta_s)
    out = DDIMScheduler(num_train_timesteps=schedule.T, trained_betas=betas.tolist(), clip_sample=snap,
                        clip_sample_range=1.0, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
                        timestep_spacing=spacing)
    out.set_timesteps(steps)
    return out


def matched(schedule: Schedule, timesteps: Tensor) -> Schedule:
    """``schedule`` with ``timesteps`` (most noisy first) as its predefined grid for ``len(timesteps)`` steps."""
    t = timesteps.long().cpu()
    return Schedule(schedule.name, schedule.alpha_bar, {**schedule.grids, len(t): (t.float(), schedule.alpha_bar[t])})


def diffusers_prev(sched: Any) -> list[int]:
    """The timesteps ``DDIMScheduler.step`` moves to from each visited one (-1: clean data)."""
    stride = sched.config.num_train_timesteps // sched.num_inference_steps
    return [max(int(t) - stride, -1) for t in sched.timesteps]


@torch.no_grad()
def diffusers_samples(model: Any, sched: Any, cond: Condition, w: float, noise: Tensor, *, snap: bool = True) -> Tensor:
    """A diffusers pipeline's sampling loop with classifier-free guidance on the adapter's ``UNet2DModel``."""
    unet = model.unet.eval()
    labels = torch.cat([model.condition(C.null_like(cond)), model.condition(cond)])  # [2B, D]: uncond, cond
    guidance_scale = 1.0 + w
    x = noise.clone()
    for t in sched.timesteps:
        out = unet(torch.cat([x, x]), t, class_labels=labels).sample  # [2B, C, H, W]
        uncond, text = out.chunk(2)
        eps = uncond + guidance_scale * (text - uncond)
        x = sched.step(eps, t, x, eta=0.0, use_clipped_model_output=snap).prev_sample
    return x


def crossguide_samples(model: Any, schedule: Schedule, cond: Condition, w: float, steps: int, noise: Tensor, *,
                       snap: bool = True) -> Tensor:
    """crossguide's DDIM with CFG at ``w``, in one batch."""
    return generate(model, schedule, cond, Guidance.cfg(w), sampler="ddim", steps=steps, batch_size=len(noise),
                    snap=snap, x_T=noise).samples


def fresh_model(preset: str, seed: int) -> Any:
    """A ``diffusers-unet`` of ``preset``'s size for the shapes data, its weights drawn from ``seed``: the zeroed
    output convolution redrawn and the condition tables at unit scale, so guidance moves the samples."""
    modality = get_modality("image")
    data = modality.preset(preset).data
    attributes = {a: list(v) for a, v in _shapes_attributes().items()}
    config = {**modality.model_config(DENOISER, preset), "zero_out": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = modality.build(DENOISER, config, attributes, {"size": data["size"], "channels": 3})
        for table in model.cond.tables.values():
            torch.nn.init.normal_(table.weight, std=1.0)
    return model.eval()


def _shapes_attributes() -> dict[str, list[str]]:
    from crossguide.modalities.image.shapes import ATTRIBUTES

    return {a: list(v) for a, v in ATTRIBUTES.items()}


def conditions(attributes: dict[str, list[str]], n: int) -> Condition:
    """``n`` requested conditions cycling through every full condition."""
    full = C.all_choices(attributes)
    return C.stack([full[i % len(full)] for i in range(n)], attributes)


def compare(model: Any, schedule: Schedule, *, steps: int, batch: int, w: float, spacing: Spacing = "trailing",
            snap: bool = True, reps: int = 0, seed: int = 0) -> dict[str, Any]:
    """Sample both ways from the same noise; time ``reps`` interleaved repetitions (0: one untimed run each)."""
    sched = scheduler(schedule, spacing, steps, snap=snap)
    ours = schedule if spacing == "linspace" else matched(schedule, sched.timesteps)
    cond = conditions(model.attributes, batch)
    noise = torch.randn((batch, *model.sample_shape), generator=torch.Generator().manual_seed(seed))
    runs = {"crossguide": lambda: crossguide_samples(model, ours, cond, w, steps, noise, snap=snap),
            "diffusers": lambda: diffusers_samples(model, sched, cond, w, noise, snap=snap)}
    samples = {name: run() for name, run in runs.items()}  # also the warm-up
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(reps):
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):  # alternate who goes first
            start, start_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    rate = {name: batch / statistics.median(v) for name, v in wall.items() if v}
    cpu_rate = {name: batch / statistics.median(v) for name, v in cpu.items() if v}
    return {
        "max_abs_diff": float((samples["crossguide"] - samples["diffusers"]).abs().max()),
        "timesteps": {"crossguide": [int(t) for t in respace(ours, steps).t.tolist()],
                      "crossguide_linspace": [int(t) for t in respace(schedule, steps).t.tolist()],
                      "diffusers": [int(t) for t in sched.timesteps.tolist()],
                      "diffusers_step_to": diffusers_prev(sched)},
        "seconds": wall,
        "cpu_seconds": cpu,
        "samples_per_s": rate,
        "cpu_samples_per_s": cpu_rate,
        "ratio": rate["crossguide"] / rate["diffusers"] if rate else None,
        # less sensitive to other processes on a shared machine: this process's CPU time, and the median of each
        # repetition's own ratio (the two sides of a repetition run back to back, under about the same load)
        "cpu_ratio": cpu_rate["crossguide"] / cpu_rate["diffusers"] if cpu_rate else None,
        "paired_ratio": statistics.median(d / c for c, d in zip(wall["crossguide"], wall["diffusers"], strict=True))
        if reps else None,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a trained diffusers-unet checkpoint (default: fresh weights)")
    ap.add_argument("--preset", default="quick", help="size of the fresh model (default: quick)")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps (default: 20)")
    ap.add_argument("--batch", type=int, default=16, help="samples per run (default: 16)")
    ap.add_argument("--w", type=float, default=3.0, help="guidance weight w; guidance_scale = 1 + w (default: 3)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions of each side (default: 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default: 1)")
    ap.add_argument("--spacing", default="trailing", help=f"DDIMScheduler timestep_spacing, one of {SPACINGS}")
    ap.add_argument("--no-snap", action="store_true", help="no x0 clamping (clip_sample=False) on either side")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fresh weights and the initial noise")
    ap.add_argument("--out", type=Path, default=Path("results/vs_diffusers/record.json"))
    args = ap.parse_args(argv)
    try:
        check_choice("timestep spacing", args.spacing, SPACINGS)
        if min(args.steps, args.batch, args.reps, args.threads) < 1:
            raise UsageError("--steps, --batch, --reps and --threads must be >= 1")
        torch.set_num_threads(args.threads)
        if args.checkpoint is not None:
            from crossguide.pipeline import load_model

            model, schedule, config = load_model(args.checkpoint)
            if config.get("denoiser") != DENOISER:
                raise UsageError(f"checkpoint {str(args.checkpoint)!r} holds denoiser {config.get('denoiser')!r}, "
                                 f"not {DENOISER!r}")
            source = str(args.checkpoint)
        else:
            model = fresh_model(args.preset, args.seed)
            schedule = get_modality("image").schedule(get_modality("image").preset(args.preset))
            source = f"fresh {args.preset} weights, seed {args.seed}"
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    snap = not args.no_snap
    result = compare(model, schedule, steps=args.steps, batch=args.batch, w=args.w, spacing=args.spacing,
                     snap=snap, reps=args.reps, seed=args.seed)
    import diffusers

    params = sum(p.numel() for p in model.parameters())
    rate, grids = result["samples_per_s"], result["timesteps"]
    print(f"{source}: {params:,} parameters; DDIM {args.steps} steps, batch {args.batch}, w={args.w:g} "
          f"(guidance_scale {1 + args.w:g}), {args.threads} threads, snap={snap}, {args.reps} interleaved reps")
    print(f"timesteps  crossguide: {grids['crossguide']}")
    print(f"timesteps  diffusers ({args.spacing}): {grids['diffusers']}, steps to {grids['diffusers_step_to']}")
    if args.spacing != "linspace":
        print(f"(crossguide's own respacing would visit {grids['crossguide_linspace']})")
    print(f"{'':>11} {'samples/s':>10} {'per CPU s':>10}")
    for name in ("crossguide", "diffusers"):
        print(f"{name:>11} {rate[name]:10.3f} {result['cpu_samples_per_s'][name]:10.3f}")
    ok_ratio, ok_diff = result["ratio"] >= TARGET_RATIO, result["max_abs_diff"] <= TARGET_DIFF
    print(f"ratio crossguide / diffusers: {result['ratio']:.3f} (target >= {TARGET_RATIO}: "
          f"{'met' if ok_ratio else 'NOT met'}); per CPU second {result['cpu_ratio']:.3f}; median of the "
          f"repetitions' own ratios {result['paired_ratio']:.3f}")
    print(f"max |crossguide - diffusers|: {result['max_abs_diff']:.3g} (target <= {TARGET_DIFF:g}: "
          f"{'met' if ok_diff else 'NOT met'})")
    record = {
        "source": source, "parameters": params, "steps": args.steps, "batch": args.batch, "w": args.w,
        "guidance_scale": 1 + args.w, "threads": args.threads, "reps": args.reps, "spacing": args.spacing,
        "snap": snap, "seed": args.seed, "timesteps": grids, "seconds": result["seconds"], "samples_per_s": rate,
        "ratio": result["ratio"], "cpu_seconds": result["cpu_seconds"],
        "cpu_samples_per_s": result["cpu_samples_per_s"], "cpu_ratio": result["cpu_ratio"],
        "paired_ratio": result["paired_ratio"], "max_abs_diff": result["max_abs_diff"],
        "targets": {"ratio": TARGET_RATIO, "max_abs_diff": TARGET_DIFF},
        "met": {"ratio": ok_ratio, "max_abs_diff": ok_diff},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "python": platform.python_version()},
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
