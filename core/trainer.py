"""A generic trainer for any :class:`Denoiser` on any :class:`ConditionalDataset`.

Joint conditional/unconditional training by condition dropout (Ho & Salimans 2021, Alg. 1), eps/x0/v targets,
AdamW with warmup and cosine decay, gradient clipping, EMA weights, optional bf16 autocast, checkpoint
directories with exact resume, and data parallelism under ``torchrun`` (DDP; gloo on CPU, nccl on GPU).
The loss is a plug-in (:data:`Loss`): the denoising loss by default, the noisy-classifier loss of
:mod:`core.classifier` for classifier guidance, which so trains, checkpoints and resumes the same way.
The EMA weights at step ``weak_at`` are kept in the checkpoint as the weaker model autoguidance guides away from.

Every random draw comes from one seeded ``torch.Generator`` that is saved with the checkpoint, so a run that
is interrupted and resumed ends with the same weights as an uninterrupted one. Under DDP every rank draws the
same *global* batch and keeps its own slice, so W processes with batch B/W train like one with batch B.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from core import checkpoint as ckpt
from core import conditions as C
from core.data import ConditionalDataset
from core.denoiser import Denoiser, self_conditioned
from core.errors import UsageError
from core.parameterization import estimate, noise, target
from core.precision import Bf16, autocast, resolve_device
from core.progress import bar as progress_bar
from core.schedules import Schedule


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 128  # global batch; split evenly across DDP ranks
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100  # linear warmup steps, then cosine decay to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # effective decay min(ema_decay, (1 + s) / (10 + s)) so short runs still average
    p_uncond: float = 0.1  # drop every attribute (the paper found 0.1-0.2 best, Ho & Salimans 2021, Table 1)
    p_attr: float = 0.1  # otherwise drop each attribute independently: partial conditions for composition
    bf16: Bf16 = "auto"
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end (and on Ctrl-C)
    device: str = "auto"
    # keep the EMA weights at this fraction of `steps` as the weaker model of autoguidance (Karras et al. 2024
    # guide with a less-trained model); 0: keep none
    weak_at: float = 0.25

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("p_uncond", "p_attr"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {p}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.weak_at < 1.0:
            raise UsageError(f"weak_at must be a fraction in [0, 1), got {self.weak_at}")

    @property
    def weak_step(self) -> int | None:
        """The step whose EMA weights are kept for autoguidance (``None``: none kept)."""
        return max(1, round(self.weak_at * self.steps)) if self.weak_at > 0 else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


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
) -> None:
    """Write the run's state; ``weak``: the early EMA weights kept for autoguidance, once they exist."""
    opt_tensors, groups = _flatten_optimizer(optimizer.state_dict())
    ckpt.save(
        out,
        tensors={
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "training": {**opt_tensors, "rng": generator.get_state()},
            **({"weak": weak} if weak is not None else {}),
        },
        json_files={"config": config, "training": {"step": step, "param_groups": groups, "stats": stats}},
    )


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
    if out is not None and ckpt.exists(out):
        step, stats, weak = _resume(out, model, ema, optimizer, generator, full_config)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    per_rank = config.batch_size // world
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    losses: list[float] = []
    start_time, start_step = time.perf_counter(), step

    def save() -> None:
        if out is not None and rank == 0 and (step > start_step or not ckpt.exists(out)):
            stats["wall_s"] = stats.get("wall_s", 0.0) + time.perf_counter() - start_time
            done = step - start_step
            if done:
                stats["examples_per_s"] = done * config.batch_size / (time.perf_counter() - start_time)
            save_checkpoint(out, model, ema, optimizer, generator, step, full_config, stats, weak)

    bar = progress_bar(total=end, desc=desc, enabled=progress and rank == 0, initial=step)
    model.train()
    try:
        while step < end:
            # The global batch is drawn identically on every rank; each keeps its slice.
            idx = torch.randint(len(data), (config.batch_size,), generator=generator)
            cond = C.drop(C.index(data.cond, idx), config.p_uncond, config.p_attr, generator)
            t = torch.randint(schedule.T, (config.batch_size,), generator=generator)
            eps = torch.randn((config.batch_size, *model.sample_shape), generator=generator)
            # Self-conditioning models see their own estimate in half the batches (Chen et al. 2022, Sec. 3.3).
            self_cond = self_conditioned(model) and bool(torch.rand((), generator=generator) < 0.5)
            mine = slice(rank * per_rank, (rank + 1) * per_rank)
            with autocast(config.bf16, device):
                loss = loss_fn(net, model, schedule, data.x[idx][mine].to(device), C.to(C.index(cond, mine), device),
                               t[mine].to(device), eps[mine].to(device), self_cond)
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
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < end:
                save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
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
) -> tuple[int, dict[str, float], dict[str, Tensor] | None]:
    saved = ckpt.load(out)
    old = saved.json["config"]
    # Everything but the step budget (and how often to checkpoint, and where the weak model is kept) must match.
    ignore = {"steps", "checkpoint_every", "weak_at"}
    for key in ("model", "attributes", "schedule"):
        if old.get(key) != config.get(key):
            raise ckpt.CheckpointError(f"checkpoint {str(out)!r} has a different {key} config; use a new --out")
    changed = {k for k in config["train"] if config["train"][k] != old["train"].get(k)} - ignore
    if changed:
        raise ckpt.CheckpointError(f"checkpoint {str(out)!r} was trained with other {sorted(changed)}; use a new --out")
    model.load_state_dict(saved.tensors["model"])
    ema.load_state_dict(saved.tensors["ema"])
    training = saved.json["training"]
    optimizer.load_state_dict(_unflatten_optimizer(saved.tensors["training"], training["param_groups"]))
    generator.set_state(saved.tensors["training"]["rng"])
    return int(training["step"]), dict(training.get("stats", {})), saved.tensors.get("weak")
