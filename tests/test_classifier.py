"""Noise classifiers: trained by the shared trainer they learn, they are reused when nothing changed, retrained
when the settings change, and the report's matched-adherence reading is right."""

from pathlib import Path

import pytest
import torch

from crossguide import checkpoint as ckpt
from crossguide.benchmarks.report import matched_fd
from crossguide.classifier import NoiseClassifier, accuracy_by_noise, fit_classifier
from crossguide.config import training
from crossguide.modalities.toy.mlp import NoisyMLP
from crossguide.modalities.toy.modality import MODALITY
from crossguide.parameterization import PREDICTIONS, estimate, target
from tests.helpers import SCHEDULE


def _fit(directory: Path, steps: int):
    splits = MODALITY.load_dataset(None, "smoke", None, 0)
    config = training(MODALITY.preset("smoke").train, steps=steps, batch_size=256)

    def build() -> NoiseClassifier:
        return NoiseClassifier(NoisyMLP(hidden=32, depth=1), 32, splits.train.attributes, (2,), {"hidden": 32})

    return fit_classifier(build, SCHEDULE, splits, lambda x: x, config, directory, meta={"test": 1}, name="test",
                          progress=False), splits


def test_a_noise_classifier_learns_the_labels_at_low_noise_and_less_at_high_noise(tmp_path: Path) -> None:
    (clf, info), splits = _fit(tmp_path / "clf", 300)
    acc = accuracy_by_noise(clf, SCHEDULE, splits.test)
    clean, noisiest = acc[min(acc, key=lambda k: float(k[6:]))], acc[max(acc, key=lambda k: float(k[6:]))]
    assert clean > 0.6 > 1 / 8  # chance is 1/8 (4 clusters x 2 sides); the exact posterior gets about 0.8
    assert noisiest < clean
    assert info["held_out_accuracy_by_sigma"] == acc and info["step"] == 300


def test_a_classifier_is_reused_when_nothing_changed_and_retrained_when_its_settings_do(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (_, first), _ = _fit(tmp_path / "clf", 30)
    mtime = (tmp_path / "clf" / "ema.safetensors").stat().st_mtime_ns
    (_, again), _ = _fit(tmp_path / "clf", 30)
    assert again["fingerprint"] == first["fingerprint"]
    assert (tmp_path / "clf" / "ema.safetensors").stat().st_mtime_ns == mtime  # loaded, not retrained
    (_, other), _ = _fit(tmp_path / "clf", 40)
    assert other["fingerprint"] != first["fingerprint"] and "retraining" in capsys.readouterr().out
    assert ckpt.load(tmp_path / "clf").json["training"]["step"] == 40


def test_every_prediction_space_round_trips_including_flow() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    ab = torch.linspace(0.05, 0.95, 6, dtype=torch.float64)
    x_t = ab.sqrt()[:, None].float() * x0 + (1 - ab).sqrt()[:, None].float() * eps
    for kind in PREDICTIONS:
        est = estimate(kind, target(kind, x0, eps, ab), x_t, ab)
        torch.testing.assert_close(est.x0, x0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(est.eps, eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(target("flow", x0, eps, ab), eps - x0)


def test_matched_fd_reads_the_curve_where_it_first_reaches_the_target() -> None:
    curve = [(0.5, 10.0), (0.7, 6.0), (0.9, 2.0), (0.8, 4.0)]  # (adherence, FD) in weight order
    assert matched_fd(curve, 0.6) == pytest.approx(8.0)
    assert matched_fd(curve, 0.85) == pytest.approx(3.0)  # crossed twice: the lower FD (3 on 0.7-0.9 and 0.9-0.8)
    assert matched_fd(curve, 0.95) != matched_fd(curve, 0.95)  # never reached: NaN
