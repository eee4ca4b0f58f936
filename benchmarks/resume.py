"""Kill-and-resume bench (reliability): does a training run that is killed, terminated or interrupted at random
moments, and restarted each time, end with the same bits as a run left alone? And how much work does each
interruption cost?

``python -m crossguide.benchmarks.resume [--modality image] [--preset quick] [--dropout P] [--kills 10] [--terms 2]
[--ints 2] [--checkpoint-minutes 0.25] [--seed 0] [--out results/resume]``

1. Train the preset's denoiser once, uninterrupted, in a child process (``straight``).
2. Train it again (``interrupted``): each launch gets one signal at a random moment of its run (SIGKILL, SIGTERM or
   SIGINT, in a seeded random order) and is restarted on the same directory; a last launch runs to the end.
3. Compare every tensor of the two final checkpoints (weights, EMA, weak copy, optimizer moments, RNG states) and
   report, per interruption, how much work was lost: seconds between the last checkpoint written and the signal.
   SIGKILL may lose up to the checkpoint interval (plus the step in flight); SIGTERM and SIGINT save the step they
   land in, so they lose none.

``--dropout`` sets the denoiser's dropout, so that training draws masks from torch's global RNG (the state a resume
must restore exactly). Writes ``resume.json`` and ``resume.md``. Every child runs with the same thread count: sums
taken in another order differ in their last bits.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from crossguide import checkpoint as ckpt
from crossguide.errors import UsageError
from crossguide.registry import get as get_modality
from crossguide.trainer import train

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def _before_training(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: stopped before training started")


def run_child(out: Path, modality: str, preset: str, dropout: float | None, checkpoint_minutes: float) -> None:
    """Train ``modality``'s ``preset`` denoiser into ``out`` (resuming what is there): the children's work."""
    m = get_modality(modality)
    spec = m.preset(preset)
    if dropout is not None:
        spec = replace(spec, model={**spec.model, "dropout": dropout})
    data = m.load_dataset(None, preset, None, 0).train
    model = m.init_model(spec, data, spec.train.seed)
    config = replace(spec.train, device="cpu", checkpoint_minutes=checkpoint_minutes)
    # until the trainer installs its own handlers, SIGINT and SIGTERM stop the child as they would during training
    # (exit 130; nothing to save yet), rather than SIGTERM's default of dying with -15
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _before_training)
    print("ready", flush=True)
    train(model, m.schedule(spec), data, config, out=out, progress=False)


def _launch(args: argparse.Namespace, out: Path) -> tuple[subprocess.Popen, float]:
    """Start a child on ``out``; returns it and the wall time at which it began training."""
    cmd = [sys.executable, "-m", "crossguide.benchmarks.resume", "--child", str(out), "--modality", args.modality,
           "--preset", args.preset, "--checkpoint-minutes", str(args.checkpoint_minutes)]
    if args.dropout is not None:
        cmd += ["--dropout", str(args.dropout)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    if line != "ready\n":
        _, err = proc.communicate(timeout=120)
        raise RuntimeError(f"training child failed to start: {line!r} {err[-2000:]}")
    return proc, time.time()


def _saved(out: Path) -> tuple[int, float | None]:
    """(step, wall time it was written) of the checkpoint in ``out``; (0, None) when there is none."""
    if not ckpt.exists(out):
        return 0, None
    return ckpt.load(out, stems=("training",)).json["training"]["step"], (out / "training.json").stat().st_mtime


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    saved = ckpt.load(path)
    return {f"{stem}.{k}": v for stem, tensors in saved.tensors.items() for k, v in tensors.items()}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Every tensor of two checkpoints: how many differ, and the largest absolute difference."""
    ta, tb = _tensors(a), _tensors(b)
    if ta.keys() != tb.keys():
        return {"identical": False, "tensors": len(ta), "differing": sorted(ta.keys() ^ tb.keys())}
    differing = [k for k in ta if not torch.equal(ta[k], tb[k])]
    worst = max((float((ta[k].double() - tb[k].double()).abs().max()) for k in differing), default=0.0)
    return {"identical": not differing, "tensors": len(ta), "differing": differing, "max_abs_diff": worst}


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    straight, interrupted = out / "straight", out / "interrupted"
    for d in (straight, interrupted):
        if d.exists():
            raise UsageError(f"{d} exists; give a new --out (this bench never overwrites a run)")
    out.mkdir(parents=True, exist_ok=True)

    began = time.time()
    proc, _ = _launch(args, straight)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {err[-2000:]}")
    straight_s = time.time() - began
    total_steps = _saved(straight)[0]

    rng = random.Random(args.seed)
    plan = ["kill"] * args.kills + ["term"] * args.terms + ["int"] * args.ints
    rng.shuffle(plan)
    # each launch is signalled after a random share of a fair slice of the straight run's time
    slice_s = straight_s / (len(plan) + 1)
    events = []
    began = time.time()
    for name in plan:
        before, _ = _saved(interrupted)
        proc, started = _launch(args, interrupted)
        time.sleep(rng.uniform(0.2, 1.6) * slice_s)
        if proc.poll() is not None:  # it finished first: the remaining signals have nothing to interrupt
            print(f"the run finished before its {name} signal; {len(plan) - len(events)} signals not sent")
            break
        sent = time.time()
        proc.send_signal(SIGNALS[name])
        said, err = proc.communicate(timeout=300)
        step, written = _saved(interrupted)
        # work lost: training time after the last checkpoint (or since this launch began, if it saved none)
        lost = sent - max(started, written) if written is not None and written >= started else sent - started
        events.append({"signal": name, "after_s": round(sent - started, 2), "step_before": before, "step_after": step,
                       "lost_s": round(max(0.0, lost), 2), "exit": proc.returncode,
                       "landed": proc.returncode != 0,  # 0: the run ended between our check and the signal
                       "message": (said.strip().splitlines() or [""])[-1]})
        print(f"{name:>4}: launched at step {before}, signalled after {sent - started:.1f} s, saved step {step}, "
              f"lost {events[-1]['lost_s']:.1f} s, exit {proc.returncode}", flush=True)
        if not events[-1]["landed"]:
            break  # the run is complete: nothing left to interrupt
    proc, _ = _launch(args, interrupted)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the last resume failed: {err[-2000:]}")
    result = {
        "modality": args.modality, "preset": args.preset, "dropout": args.dropout, "seed": args.seed,
        "steps": total_steps, "threads": torch.get_num_threads(), "checkpoint_minutes": args.checkpoint_minutes,
        "straight_s": round(straight_s, 1), "interrupted_s": round(time.time() - began, 1), "events": events,
        "comparison": compare(straight, interrupted),
        "leftovers": sorted(p.name for p in out.iterdir() if p.name not in ("straight", "interrupted")),
    }
    (out / "resume.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "resume.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    """The bench's tables: one row per interruption, then the verdict."""
    interval = 60 * result["checkpoint_minutes"]
    rows = ["| # | signal | after (s) | step before | step saved | work lost (s) | exit |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {i} | {e['signal']} | {e['after_s']} | {e['step_before']} | {e['step_after']} | {e['lost_s']} | "
             f"{e['exit']} |" for i, e in enumerate(result["events"], 1)]
    c = result["comparison"]
    by = {s: [e["lost_s"] for e in result["events"] if e["signal"] == s] for s in SIGNALS}
    lines = [
        f"# Kill and resume: {result['modality']} {result['preset']}, dropout {result['dropout']}, "
        f"{result['steps']} steps, {result['threads']} threads",
        "", *rows, "",
        f"- checkpoint interval: {interval:.0f} s; most work lost per signal: "
        + ", ".join(f"{s} {max(v):.1f} s" for s, v in by.items() if v),
        f"- uninterrupted run {result['straight_s']} s; interrupted run, all launches, {result['interrupted_s']} s",
        f"- final checkpoints: {c['tensors']} tensors, "
        + ("**bit-identical**" if c["identical"] else f"**{len(c['differing'])} differ** "
           f"(largest difference {c.get('max_abs_diff')})"),
        f"- leftover files beside the runs: {result['leftovers'] or 'none'}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", default="image")
    p.add_argument("--preset", default="quick")
    p.add_argument("--dropout", type=float, help="the denoiser's dropout (default: the preset's; the image U-Net "
                                                 "takes one, the quick preset's is 0)")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs (default 10)")
    p.add_argument("--terms", type=int, default=2, help="SIGTERMs (default 2)")
    p.add_argument("--ints", type=int, default=2, help="SIGINTs, i.e. Ctrl-C (default 2)")
    p.add_argument("--checkpoint-minutes", type=float, default=0.25, help="checkpoint interval (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="seeds the signals' order and moments")
    p.add_argument("--out", default="results/resume")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        try:
            run_child(Path(args.child), args.modality, args.preset, args.dropout, args.checkpoint_minutes)
        except KeyboardInterrupt as e:
            print(e, flush=True)
            return 130
        return 0
    try:
        get_modality(args.modality).preset(args.preset)  # unknown names: a one-line error before any work
        result = run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(result))
    return 0 if result["comparison"]["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
