"""Attribute judges: a classifier trained on a dataset's real training data that serves as an evaluator.

A modality supplies a *backbone* (raw examples ``[B, ...]`` -> features ``[B, D]``); :class:`Judge` adds one
linear head per attribute. Its penultimate features feed Frechet distance, precision/recall and diversity;
its heads judge adherence (the role the Inception network plays for FID/IS in Ho & Salimans 2021).
Trained judges are cached on disk, keyed by a fingerprint of their data and configuration, and the quick presets'
judges ship as reference artifacts (:mod:`crossguide.reference`): judges are part of the metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from crossguide import checkpoint as ckpt
from crossguide import metrics as M
from crossguide import reference
from crossguide.conditions import NULL, Attributes, Condition
from crossguide.data import ConditionalDataset
from crossguide.progress import bar


class Judge(nn.Module):
    """``backbone`` features plus one linear head per attribute: ``x -> (features [B, D], {attr: logits})``."""

    def __init__(self, backbone: nn.Module, feature_dim: int, attributes: Attributes):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({a: nn.Linear(feature_dim, len(v)) for a, v in attributes.items()})

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        f = self.backbone(x)
        return f, {a: head(f) for a, head in self.heads.items()}


@dataclass(frozen=True)
class FitConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


Augment = Callable[[Tensor, torch.Generator], Tensor]


def fit(
    judge: Judge,
    train: ConditionalDataset,
    test: ConditionalDataset,
    config: FitConfig,
    *,
    augment: Augment | None = None,
    progress: bool = True,
    desc: str = "fit judge",
) -> tuple[dict[str, float], float]:
    """Train with cross-entropy on every attribute; return held-out accuracy per attribute and jointly, and the
    final training loss (the mean of the last 50 steps). ``desc`` labels the progress bar."""
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(judge.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps)
    judge.train()
    losses: list[float] = []
    for _ in bar(range(config.steps), desc=desc, enabled=progress):
        idx = torch.randint(len(train), (config.batch_size,), generator=g)
        x = train.x[idx]
        if augment is not None:
            x = augment(x, g)
        _, logits = judge(x)
        loss = sum(masked_cross_entropy(logits[a], train.cond[a][idx]) for a in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    judge.eval()
    return accuracy(judge, test.x, test.cond), final_loss(losses)


def final_loss(losses: list[float], last: int = 50) -> float:
    """What a model card reports as the final training loss: the mean of the last ``last`` steps."""
    tail = losses[-last:]
    return sum(tail) / max(1, len(tail))


@torch.no_grad()
def predict(judge: Judge, x: Tensor, batch_size: int = 512) -> tuple[Tensor, dict[str, Tensor]]:
    """Features ``[N, D]`` and predicted values ``[N]`` per attribute, in batches."""
    judge.eval()
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        f, logits = judge(x[i : i + batch_size])
        feats.append(f.float())
        preds.append({a: v.argmax(-1) for a, v in logits.items()})
    return torch.cat(feats), {a: torch.cat([p[a] for p in preds]) for a in preds[0]}


def masked_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over the labelled rows (``NULL``: the example does not state the attribute)."""
    total = nn.functional.cross_entropy(logits, target, ignore_index=NULL, reduction="sum")
    return total / (target != NULL).sum().clamp(min=1)


def accuracy(judge: Judge, x: Tensor, cond: Condition) -> dict[str, float]:
    """Accuracy per attribute and ``joint`` (every labelled attribute right); ``NULL`` labels are skipped."""
    _, pred = predict(judge, x)
    scores = M.adherence(cond, pred)
    out = {a: scores.get(f"adherence/{a}", float("nan")) for a in pred}
    out["joint"] = scores["adherence"]
    return out


def cached(cache: Path, name: str, key: str, build: Callable[[], nn.Module],
           train_fn: Callable[[nn.Module], dict[str, Any]], *, kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """A trained module: the reference artifact ``name`` when it was made from what ``key`` fingerprints
    (:mod:`crossguide.reference`), else the local cache ``cache/name-key``, else built, trained by ``train_fn``
    (which returns its info, with ``final_loss``) and saved there. The info gains the module's ``id``
    (``name@`` the weights' sha256 prefix: the same weights give the same id anywhere) and its ``source``."""
    artifact = reference.find(name, key)
    path = artifact.path if artifact is not None else Path(cache) / f"{name}-{key}"
    # initial weights and any global draw in training (dropout) come from the fingerprint: the same recipe on the
    # same machine gives the same weights, so a rebuilt judge has the same id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(key, 16) % 2**63)
        module = build()
        if artifact is None and not ckpt.exists(path):
            info = train_fn(module)
            ckpt.save(path, {"weights": module.state_dict()}, {"info": info, "config": {"fingerprint": key}})
    saved = ckpt.load(path)
    module.load_state_dict(saved.tensors["weights"])
    info = saved.json["info"]
    reference.offer(name, kind, key, path, stems=("weights", "info", "config"),
                    card={"seed": info.get("fit", {}).get("seed"), "train_s": info.get("train_s"),
                          "final_loss": info.get("final_loss"), "quality": info.get("quality")})
    weights = ckpt.read_manifest(path)["weights.safetensors"]["sha256"]
    source = "reference" if artifact is not None else "trained"
    return module.eval(), {**info, "id": f"{name}@{weights[:12]}", "source": source}


class JudgeEvaluator:
    """The :class:`crossguide.evaluation.Evaluator` made from a trained :class:`Judge`."""

    def __init__(self, judge: Judge, info: dict[str, Any],
                 objective: Callable[[Tensor, Condition], dict[str, float]] | None = None):
        self.judge, self.info, self._objective = judge, info, objective

    def features(self, data: Tensor) -> Tensor:
        return predict(self.judge, data)[0]

    def classify(self, data: Tensor) -> dict[str, Tensor]:
        return predict(self.judge, data)[1]

    def objective(self, data: Tensor, requested: Condition) -> dict[str, float]:
        return {} if self._objective is None else self._objective(data, requested)


def train_judge(
    cache: Path,
    name: str,
    build: Callable[[], Judge],
    train: ConditionalDataset,
    test: ConditionalDataset,
    config: FitConfig,
    *,
    augment: Augment | None = None,
    extra_key: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Judge, dict[str, Any]]:
    """Train (or load from ``cache``) a judge of ``train``; its info records the held-out accuracy on ``test``."""
    key = reference.fingerprint(train.x, *train.cond.values(), test.x,
                                config=asdict(config), name=name, **dict(extra_key or {}))

    def run(judge: nn.Module) -> dict[str, Any]:
        start = time.perf_counter()
        acc, loss = fit(judge, train, test, config, augment=augment, progress=progress, desc=f"fit judge-{name}")
        return {"name": name, "held_out_accuracy": acc, "fit": asdict(config), "n_train": len(train),
                "n_test": len(test), "train_s": time.perf_counter() - start, "final_loss": loss,
                "quality": {"held-out accuracy": acc}}

    judge, info = cached(Path(cache) / "judges", f"judge-{name}", key, build, run, kind="judge")
    return judge, info  # type: ignore[return-value]
