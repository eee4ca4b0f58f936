"""A generic trainer for any :class:`Denoiser` on any :class:`ConditionalDataset`.

Joint conditional/unconditional training by condition dropout (Ho & Salimans 2021, Alg. 1), eps/x0/v targets,
AdamW with warmup and cosine decay, gradient clipping, EMA weights, optional bf16 autocast, checkpoint
directories with exact resume, and data parallelism under ``torchrun`` (DDP; gloo on CPU, nccl on GPU).
The loss is a plug-in (:data:`Loss`): the denoising loss by default, the noisy-classifier loss of
:mod:`crossguide.classifier` for classifier guidance, which so trains, checkpoints and resumes the same way.
The EMA weights at step ``weak_at`` are kept in the checkpoint as the weaker model autoguidance guides away from.

Every random draw comes from one seeded ``torch.Generator``, and dropout's from torch's global RNG, which the
trainer seeds from the same seed while it trains (the caller's global RNG state is put back afterwards). Both
states are saved with the checkpoint, so a run that is interrupted and resumed ends with the same weights as an
uninterrupted one. Ctrl-C and SIGTERM are acted on between steps only: the checkpoint they write is the state at
a step boundary, never one half-way through an update. Checkpoints are also written every ``checkpoint_minutes``
(and every ``checkpoint_every`` steps), so a kill loses at most that much work. Under DDP every rank draws the
same *global* batch and keeps its own slice, so W processes with batch B/W train like one with batch B.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from crossguide import checkpoint as ckpt
from crossguide import conditions as C
from crossguide.config import TrainConfig
from crossguide.data import ConditionalDataset
from crossguide.denoiser import Denoiser, self_conditioned
from crossguide.errors import UsageError
from crossguide.parameterization import estimate, noise, target
from crossguide.precision import autocast, resolve_device
from crossguide.progress import bar as progress_bar
from crossguide.schedules import Schedule, to_tensors


class TrainResult(NamedTuple):
    model: Denoiser  # raw weights
    ema: Denoiser  # EMA weights: use these for sampling
    step: int
    losses: list[float]  # per-step training loss of this call
    stats: dict[str, float]  # wall time, examples per second


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors = {f"opt.{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    return {"state": state, "param_groups": groups}


# torch keeps 32 bits of a seed; the global RNG (dropout) gets a stream of its own, as seeding it with `seed`
# itself would replay the generator's draws as dropout masks
_GLOBAL_SEED_OFFSET = 0x9E3779B9


def _global_rng(device: torch.device | None) -> dict[str, Tensor]:
    """The states of torch's global RNGs that dropout draws from: the CPU one and, training on a GPU, that GPU's."""
    gpu = device is not None and device.type == "cuda"
    return {"torch_rng": torch.get_rng_state(), **({"cuda_rng": torch.cuda.get_rng_state(device)} if gpu else {})}


def _seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the global CPU RNG and the training GPU's (``torch.manual_seed`` would also reseed the other GPUs,
    which the fork in :func:`train` does not restore)."""
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def _set_global_rng(states: dict[str, Tensor], device: torch.device) -> None:
    """Restore :func:`_global_rng`'s states (a GPU's only when training on one: a GPU run resumed on the CPU
    goes on with the seeded CPU stream)."""
    if "torch_rng" in states:  # checkpoints before the global RNG was saved have none
        torch.set_rng_state(states["torch_rng"])
    if "cuda_rng" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda_rng"], device)


def save_checkpoint(
    out: Path,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    config: dict[str, Any],
    stats: dict[str, float],
    weak: dict[str, Tensor] | None = None,
    device: torch.device | None = None,
    schedule: Schedule | None = None,
) -> None:
    """Write the run's state; ``weak``: the early EMA weights kept for autoguidance, once they exist;
    ``device``: where it trains (a GPU's RNG state is saved too); ``schedule``: its table, so that sampling never
    depends on rebuilding the schedule by name."""
    opt_tensors, groups = _flatten_optimizer(optimizer.state_dict())
    ckpt.save(
        out,
        tensors={
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "training": {**opt_tensors, "rng": generator.get_state(), **_global_rng(device)},
            **({"weak": weak} if weak is not None else {}),
            **({"schedule": to_tensors(schedule)} if schedule is not None else {}),
        },
        json_files={"config": config, "training": {"step": step, "param_groups": groups, "stats": stats}},
    )


@contextlib.contextmanager
def _signals_between_steps() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back while the training loop runs; yields the list of those that arrived.

    Python raises ``KeyboardInterrupt`` wherever Ctrl-C lands, e.g. after ``optimizer.step`` but before the EMA
    update and the step count: a save then would write a state of no step. So the handlers only note the signal,
    and the loop checks the list between steps, saves the state of that boundary and stops. A second signal
    stops at once without saving (the last checkpoint stands), for a step too long to wait for. A signal the
    process ignores (``nohup``) stays ignored. Handlers can be set only in the main thread; elsewhere nothing is
    held back (signals reach only the main thread anyway). The previous handlers are restored afterwards.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopped without saving")
        received.append(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, note)
    try:
        yield received
    finally:
        for s, handler in previous.items():  # None: set outside Python, which here means the default
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _stop_requested(received: list[int], world: int, device: torch.device) -> bool:
    """Whether any rank got a signal: under DDP all ranks must stop at the same step, or the others would wait
    in the next all-reduce forever."""
    if world == 1:
        return bool(received)
    flag = torch.tensor([float(bool(received))], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def train(
    model: Denoiser,
    schedule: Schedule,
    data: ConditionalDataset,
    config: TrainConfig,
    *,
    out: Path | None = None,
    meta: dict[str, Any] | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    loss: Loss | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` (in place) and return it with its EMA copy.

    Args:
        out: checkpoint directory; an existing one with a compatible config is resumed.
        meta: extra JSON stored in ``config.json`` (modality, dataset, ...), besides model and train configs.
        stop_at: stop after this global step as if interrupted (checkpoint written), e.g. to test resuming.
        loss: the training objective (default :func:`denoising_loss`).
        desc: the progress bar's label.

    Raises:
        KeyboardInterrupt: after Ctrl-C or SIGTERM, once the state of the last finished step is saved.
    """
    loss_fn = denoising_loss if loss is None else loss
    rank, world = _dist()
    if config.batch_size % world:
        raise UsageError(f"batch_size {config.batch_size} is not divisible by the {world} DDP processes")
    if set(data.attributes) != set(model.attributes):
        raise UsageError(f"dataset attributes {sorted(data.attributes)} != model's {sorted(model.attributes)}")
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    # The global RNG is the run's own while it trains (seeded here, or restored by _resume), the caller's after;
    # signals are noted from here on and acted on between steps.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            _signals_between_steps() as received:
        _seed_global_rng((config.seed + _GLOBAL_SEED_OFFSET) % 2**32, device)
        model.to(device)
        ema = copy.deepcopy(model).requires_grad_(False).eval()
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
        generator = torch.Generator().manual_seed(config.seed)
        full_config = {
            **(meta or {}),
            "model": model.config(),
            "attributes": model.attributes,
            "schedule": {"name": schedule.name, "T": schedule.T},
            "train": asdict(config),
        }
        step, stats, weak = 0, {"wall_s": 0.0}, None
        saved_step = None  # the step of the checkpoint in `out`
        if out is not None:
            ckpt.check_target(out)  # before any work: a folder of other files is never replaced
            if ckpt.exists(out):
                step, stats, weak = _resume(out, model, ema, optimizer, generator, full_config, device)
                saved_step = step
        net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
        per_rank = config.batch_size // world
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        losses: list[float] = []
        start_time, start_step, wall_before = time.perf_counter(), step, stats.get("wall_s", 0.0)
        saved_at = time.monotonic()

        def save() -> None:
            nonlocal saved_step, saved_at
            if out is None or rank != 0 or step == saved_step:
                return
            elapsed = time.perf_counter() - start_time
            stats["wall_s"] = wall_before + elapsed
            if step > start_step:
                stats["examples_per_s"] = (step - start_step) * config.batch_size / elapsed
            save_checkpoint(out, model, ema, optimizer, generator, step, full_config, stats, weak, device,
                            schedule)
            saved_step, saved_at = step, time.monotonic()

        def due() -> bool:
            """A periodic save is due (the end saves anyway)."""
            by_steps = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
            by_time = config.checkpoint_minutes > 0 and time.monotonic() - saved_at >= 60 * config.checkpoint_minutes
            return step < end and (by_steps or by_time)

        bar = progress_bar(total=end, desc=desc, enabled=progress and rank == 0, initial=step)
        model.train()
        try:
            while step < end and not _stop_requested(received, world, device):
                # The global batch is drawn identically on every rank; each keeps its slice.
                idx = torch.randint(len(data), (config.batch_size,), generator=generator)
                cond = C.drop(C.index(data.cond, idx), config.p_uncond, config.p_attr, generator)
                t = torch.randint(schedule.T, (config.batch_size,), generator=generator)
                eps = torch.randn((config.batch_size, *model.sample_shape), generator=generator)
                # Self-conditioning models see their own estimate in half the batches (Chen et al. 2022, Sec. 3.3).
                self_cond = self_conditioned(model) and bool(torch.rand((), generator=generator) < 0.5)
                mine = slice(rank * per_rank, (rank + 1) * per_rank)
                with autocast(config.bf16, device):
                    loss = loss_fn(net, model, schedule, data.x[idx][mine].to(device),
                                   C.to(C.index(cond, mine), device), t[mine].to(device), eps[mine].to(device),
                                   self_cond)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                _ema_update(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
                step += 1
                if step == config.weak_step:
                    weak = {k: v.detach().clone() for k, v in ema.state_dict().items()}
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"training loss became {value} at step {step}; try a lower lr")
                losses.append(value)
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{sum(losses[-25:]) / 25:.4f}")
                if due():
                    save()
        finally:
            bar.close()
        save()
        if received:
            name = signal.Signals(received[0]).name
            raise KeyboardInterrupt(f"{name}: stopped at step {step}" + (f", saved in {out}" if out else ""))
    model.eval()
    stats["examples_per_s_this_run"] = (step - start_step) * config.batch_size / max(
        1e-9, time.perf_counter() - start_time
    )
    return TrainResult(model, ema, step, losses, stats)


# (net: the model or its DDP wrapper, model, schedule, batch [B, ...], cond, t [B], eps [B, ...], self_cond) -> loss
Loss = Callable[[nn.Module, Any, Schedule, Tensor, C.Condition, Tensor, Tensor, bool], Tensor]


def denoising_loss(
    net: nn.Module,
    model: Denoiser,
    schedule: Schedule,
    batch: Tensor,
    cond: C.Condition,
    t: Tensor,
    eps: Tensor,
    self_cond: bool = False,
) -> Tensor:
    """Simple loss ``||target - model(x_t, t, c)||^2`` (Ho et al. 2020, Eq. 14) plus the model's extra term.

    ``self_cond``: first estimate ``x0`` without gradients and feed it back as ``x0_self`` (Chen et al. 2022).
    """
    x0 = model.encode(batch)
    ab = schedule.at(t)
    x_t = noise(x0, eps, ab)
    extra_in = {}
    if self_conditioned(model):
        x0_self = None
        if self_cond:
            with torch.no_grad():
                x0_self = estimate(model.prediction, net(x_t, t.float(), cond).float(), x_t, ab).x0
        extra_in = {"x0_self": x0_self}
    out = net(x_t, t.float(), cond, **extra_in).float()
    loss = (out - target(model.prediction, x0, eps, ab)).pow(2).mean()
    extra = model.extra_loss(batch, x0, x_t, t, out)
    return loss if extra is None else loss + extra.float()


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` (Polyak averaging; Ho et al. 2020, App. B)."""
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def _resume(
    out: Path,
    model: nn.Module,
    ema: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: dict[str, Any],
    device: torch.device,
) -> tuple[int, dict[str, float], dict[str, Tensor] | None]:
    saved = ckpt.load(out)
    old = saved.json.get("config", {})
    # Everything but the step budget (and how often to checkpoint, and where the weak model is kept) must match.
    ignore = {"steps", "checkpoint_every", "checkpoint_minutes", "weak_at"}
    for key in ("model", "attributes", "schedule"):
        if old.get(key) != config.get(key):
            raise ckpt.CheckpointError(f"checkpoint {str(out)!r} has a different {key} config; use a new --out")
    old_train = old.get("train") if isinstance(old.get("train"), dict) else {}
    changed = {k for k in config["train"] if config["train"][k] != old_train.get(k)} - ignore
    if changed:
        raise ckpt.CheckpointError(f"checkpoint {str(out)!r} was trained with other {sorted(changed)}; use a new --out")
    step, training, optimizer_state = _check_training_state(out, saved, model, ema, optimizer, generator)
    model.load_state_dict(saved.tensors["model"])
    ema.load_state_dict(saved.tensors["ema"])
    optimizer.load_state_dict(optimizer_state)
    generator.set_state(saved.tensors["training"]["rng"])
    _set_global_rng(saved.tensors["training"], device)
    return step, dict(training.get("stats", {})), saved.tensors.get("weak")


def _check_training_state(
    out: Path, saved: ckpt.Checkpoint, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Check that a checkpoint's training state fits this run before any of it is loaded; returns the step, the
    ``training.json`` dict and the optimizer's state dict.

    A checkpoint that verifies against its manifest can still be damaged by hand or written by other code;
    without these checks it would fail deep inside ``load_state_dict`` or at the first optimizer step with
    a ``KeyError`` or a shape error, instead of a :class:`CheckpointError` saying what is wrong.
    """
    def bad(what: str) -> ckpt.CheckpointError:
        return ckpt.CheckpointError(f"checkpoint {str(out)!r}: {what}; delete it or use a new --out")

    training = saved.json.get("training")
    if not isinstance(training, dict):
        raise bad("training.json is missing or not a JSON object")
    step, groups, stats = training.get("step"), training.get("param_groups"), training.get("stats", {})
    if type(step) is not int or step < 0:
        raise bad(f"training.json has step {step!r}, not a step count")
    if not isinstance(stats, dict):
        raise bad("training.json stats are not a JSON object")
    expected_groups = [len(g["params"]) for g in optimizer.param_groups]
    if not (isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
            and [len(g["params"]) for g in groups] == expected_groups):
        raise bad(f"training.json param_groups are not a list of {len(expected_groups)} optimizer group(s) holding "
                  f"{expected_groups} parameters")
    for stem, module in (("model", model), ("ema", ema), ("weak", ema)):
        _check_shapes(bad, stem, saved.tensors.get(stem), module.state_dict(), optional=stem == "weak")
    tensors = saved.tensors.get("training")
    if tensors is None:
        raise bad("training.safetensors is missing")
    for key, like in (("rng", generator.get_state()), ("torch_rng", torch.get_rng_state())):
        state = tensors.get(key)
        if state is None and key == "torch_rng":
            continue  # a checkpoint from before the global RNG was saved
        if state is None or state.dtype != like.dtype or state.shape != like.shape:
            raise bad(f"the training RNG state {key!r} is missing or not a {like.dtype} tensor of {list(like.shape)}")
    try:
        optimizer_state = _unflatten_optimizer(tensors, groups)
    except ValueError as e:
        raise bad(f"an optimizer tensor's name is not opt.<param index>.<name> ({e})") from e
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, state in optimizer_state["state"].items():
        if not 0 <= i < len(params):
            raise bad(f"optimizer state for parameter {i}, but the model has {len(params)}")
        for k, v in state.items():
            if v.ndim and v.shape != params[i].shape:  # moments are shaped like their parameter, counts are scalars
                raise bad(f"optimizer state opt.{i}.{k} has shape {list(v.shape)}, its parameter "
                          f"{list(params[i].shape)}")
    return step, training, optimizer_state


def _check_shapes(bad: Callable[[str], Exception], stem: str, saved: dict[str, Tensor] | None,
                  expected: dict[str, Tensor], *, optional: bool = False) -> None:
    """Raise ``bad(...)`` unless ``saved`` holds exactly ``expected``'s tensor names and shapes."""
    if saved is None:
        if optional:
            return
        raise bad(f"{stem}.safetensors is missing")
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing or unexpected:
        raise bad(f"{stem}.safetensors does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in expected.items():
        if saved[k].shape != v.shape:
            raise bad(f"{stem}.safetensors has {k} of shape {list(saved[k].shape)}, the model's is {list(v.shape)}")
