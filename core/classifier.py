"""Noise-conditional classifiers for classifier guidance (Dhariwal & Nichol 2021, Sec. 4.1).

A modality supplies a *backbone* ``(x_t [B, ...], t [B]) -> features [B, D]`` that reads the diffusion space
(data space, or a learned embedding space) at any noise level; :class:`NoiseClassifier` adds one linear head per
attribute. It is trained by the denoiser's trainer (:func:`crossguide.trainer.train`) with :func:`classification_loss`:
random ``t``, cross-entropy of the clean labels, EMA weights, checkpointed and resumable like a denoiser.
Attributes are treated as independent given ``x_t``: ``log p(c | x_t) = sum_a log p(c_a | x_t)`` over the
attributes ``c`` states. Classifier guidance (:mod:`crossguide.rules.classifier`) differentiates :meth:`log_prob`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from crossguide import checkpoint as ckpt
from crossguide import conditions as C
from crossguide import reference
from crossguide.conditions import NULL, Attributes, Condition
from crossguide.config import TrainConfig
from crossguide.data import ConditionalDataset, Splits
from crossguide.judge import final_loss, masked_cross_entropy
from crossguide.parameterization import noise
from crossguide.schedules import Schedule
from crossguide.trainer import train


class LogProb(Protocol):
    """What classifier guidance needs: ``log p(c | x_t)`` per example, differentiable in ``x_t``."""

    def log_prob(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:  # [B, ...], [B], cond -> [B]
        ...


class NoiseClassifier(nn.Module):
    """``backbone(x_t, t)`` features plus one linear head per attribute: ``-> {attribute: logits [B, n]}``.

    Args:
        backbone: ``(x_t, t) -> [B, dim]``.
        dim: the backbone's feature width.
        attributes: attribute -> value names.
        sample_shape: one example's shape in diffusion space (what the trainer draws noise for).
        config: JSON that rebuilds the backbone through its modality (stored in the checkpoint).
    """

    self_conditioning = False

    def __init__(self, backbone: nn.Module, dim: int, attributes: Attributes, sample_shape: Sequence[int],
                 config: Mapping[str, Any]):
        super().__init__()
        self.backbone = backbone
        self.attributes = {a: list(v) for a, v in attributes.items()}
        self.sample_shape = tuple(sample_shape)
        self._config = {**dict(config), "dim": dim}
        self.heads = nn.ModuleDict({a: nn.Linear(dim, len(v)) for a, v in attributes.items()})

    def forward(self, x_t: Tensor, t: Tensor) -> dict[str, Tensor]:
        f = self.backbone(x_t, t)  # [B, D]
        return {a: head(f).float() for a, head in self.heads.items()}

    def log_prob(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """``sum_a log p(c_a | x_t)`` over the attributes ``cond`` states (``NULL`` ones add 0): ``[B]``."""
        logits = self(x_t, t)
        total = torch.zeros(x_t.shape[0], device=x_t.device)
        for a, lg in logits.items():
            c = cond[a].to(x_t.device)
            picked = lg.log_softmax(-1).gather(1, c.clamp(min=0)[:, None])[:, 0]  # [B]
            total = total + torch.where(c == NULL, torch.zeros_like(picked), picked)
        return total

    def encode(self, batch: Tensor) -> Tensor:
        """Identity: the classifier is trained on data already in diffusion space (:func:`encoded`)."""
        return batch

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def classification_loss(net: nn.Module, model: Any, schedule: Schedule, batch: Tensor, cond: Condition, t: Tensor,
                        eps: Tensor, self_cond: bool = False) -> Tensor:
    """Cross-entropy of the clean labels from ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` (Dhariwal &
    Nichol 2021, Sec. 4.1), summed over attributes; unlabelled (``NULL``) examples are skipped. A
    :data:`crossguide.trainer.Loss`."""
    x_t = noise(batch, eps, schedule.at(t))
    logits = net(x_t, t.float())
    return sum(masked_cross_entropy(logits[a], cond[a]) for a in logits)  # type: ignore[return-value]


def grad_log_prob(classifier: LogProb, x_t: Tensor, t: Tensor, conds: Sequence[Condition]) -> Tensor:
    """``grad_x log p(c_k | x_t)`` for each of K conditions at once: one forward and one backward over the
    K copies of ``x_t`` stacked on the batch: ``[K, B, ...]``."""
    k, b = len(conds), x_t.shape[0]
    with torch.enable_grad():
        x = x_t.detach().float().unsqueeze(0).expand(k, *x_t.shape).reshape(k * b, *x_t.shape[1:])
        x.requires_grad_(True)
        lp = classifier.log_prob(x, t.repeat(k), C.concat([C.to(c, x_t.device) for c in conds]))  # [K*B]
        (grad,) = torch.autograd.grad(lp.sum(), x)
    return grad.view(k, *x_t.shape)


@torch.no_grad()
def encoded(encode: Callable[[Tensor], Tensor], data: ConditionalDataset, batch_size: int = 512) -> ConditionalDataset:
    """``data`` mapped into diffusion space by a denoiser's ``encode`` (the identity for data-space models)."""
    x = torch.cat([encode(data.x[i : i + batch_size]).float().cpu() for i in range(0, len(data), batch_size)])
    return ConditionalDataset(f"{data.name}:encoded", x, data.cond, data.attributes, data.info)


@torch.no_grad()
def accuracy_by_noise(classifier: NoiseClassifier, schedule: Schedule, test: ConditionalDataset,
                      fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75), seed: int = 0) -> dict[str, float]:
    """Held-out joint accuracy at a few noise levels, keyed by ``sigma``: how much the classifier still sees."""
    from crossguide.metrics import adherence

    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(test.x.shape, generator=g)
    out = {}
    classifier.eval()
    for f in fractions:
        t = torch.full((len(test),), min(schedule.T - 1, round(f * (schedule.T - 1))))
        ab = schedule.at(t)
        preds = [classifier(noise(test.x[i : i + 512], eps[i : i + 512], ab[i : i + 512]), t[i : i + 512].float())
                 for i in range(0, len(test), 512)]
        judged = {a: torch.cat([p[a] for p in preds]).argmax(-1) for a in test.attributes}
        sigma = float(((1 - ab[0]) / ab[0]).sqrt())
        out[f"sigma={sigma:.3g}"] = adherence(test.cond, judged)["adherence"]
    return out


def fit_classifier(
    build: Callable[[], NoiseClassifier],
    schedule: Schedule,
    splits: Splits,
    encode: Callable[[Tensor], Tensor],
    train_config: TrainConfig,
    directory: Path,
    *,
    meta: Mapping[str, Any],
    name: str,
    progress: bool = True,
) -> tuple[NoiseClassifier, dict[str, Any]]:
    """Train (or resume, or load) a noise classifier in the checkpoint directory ``directory``, or load the
    reference artifact ``name`` (:mod:`crossguide.reference`) when ``directory`` holds none and the artifact was made
    from the same encoded data, labels, architecture and training.

    Args:
        build: ``() -> NoiseClassifier``, fresh weights.
        encode: the denoiser's ``encode`` (the classifier reads the same diffusion space).
        train_config: a :class:`crossguide.trainer.TrainConfig` (no condition dropout: labels are clean).
        meta: JSON stored in its ``config.json`` (modality, dataset, backbone config).

    A directory trained on other data or settings (encoding, labels, architecture, training) is replaced, with
    a message.
    Returns the EMA classifier (eval mode) and its info: held-out accuracy by noise level, training stats.
    """
    train_set, test_set = encoded(encode, splits.train), encoded(encode, splits.test)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        model = build()
    key = reference.fingerprint(train_set.x, *train_set.cond.values(), config=dict(meta), model=model.config(),
                                train=reference.trained_by(train_config))
    if ckpt.exists(directory) and ckpt.read_config(directory).get("fingerprint") != key:
        print(f"classifier in {directory} was trained on other data or settings; retraining it")
        shutil.rmtree(directory)
    artifact = None if ckpt.exists(directory) else reference.find(name, key)
    if artifact is not None:
        model.load_state_dict(ckpt.load(artifact.path, stems=("ema",)).tensors["ema"])
        clf, stats, step, losses = model.eval(), artifact.entry.get("train", {}), train_config.steps, []
        where, source = artifact.path, "reference"
    else:
        result = train(model, schedule, train_set, train_config, out=directory, meta={**meta, "fingerprint": key},
                       progress=progress, loss=classification_loss, desc=f"train {name}")
        clf, stats, step, losses, where, source = result.ema.eval(), result.stats, result.step, result.losses, \
            directory, "trained"
    accuracy = accuracy_by_noise(clf, schedule, test_set)
    if source == "trained" and losses:
        stats = {**stats, "final_loss": final_loss(losses)}
    reference.offer(name, "noise classifier", key, where, stems=("config", "ema"),
                    card={"seed": train_config.seed, "train_s": stats.get("wall_s"), "train": stats,
                          "final_loss": stats.get("final_loss"),
                          "quality": {"held-out joint accuracy by noise level": accuracy}})
    weights = ckpt.read_manifest(where)["ema.safetensors"]["sha256"]
    info = {"held_out_accuracy_by_sigma": accuracy, "train": stats, "step": step, "directory": str(where),
            "fingerprint": key, "id": f"{name}@{weights[:12]}", "source": source}
    return clf, info
