"""The image U-Net: shapes, the null embedding for dropped attributes, clipping, config round trips."""

import pytest
import torch

from crossguide.conditions import NULL
from crossguide.errors import UsageError
from crossguide.modalities.image import MODALITY
from crossguide.modalities.image.unet import UNet

SHAPES_ATTRS = {"shape": ["circle", "square", "triangle", "plus"], "color": ["red", "green", "blue", "yellow"]}
DIGIT_ATTRS = {"digit": [str(d) for d in range(10)]}
TINY = {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": [4], "heads": 2}


def _cond(attributes, values):
    return {a: torch.tensor(v, dtype=torch.long) for a, v in zip(attributes, values, strict=True)}


def _randomise_output(model: UNet) -> UNet:
    """The output conv is zero-initialised (every prediction is 0); give it weights so outputs differ."""
    torch.manual_seed(1)
    for p in model.out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    for name, p in model.named_parameters():
        if "out_layers" in name or "proj" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.mark.parametrize(
    ("size", "channels", "config", "attributes"),
    [
        (8, 3, TINY, SHAPES_ATTRS),
        (16, 3, {**TINY, "mults": [1, 2, 2], "attention": [4, 8]}, DIGIT_ATTRS),
        (32, 1, {**TINY, "mults": [1, 1, 2, 2], "res_blocks": 2, "attention": [8]}, {"label": ["a", "b"]}),
        (12, 3, {**TINY, "mults": [1, 2], "attention": []}, SHAPES_ATTRS),
    ],
)
def test_output_shape_matches_input(size, channels, config, attributes):
    torch.manual_seed(0)
    model = UNet(attributes, size=size, in_channels=channels, **config)
    assert model.sample_shape == (channels, size, size)
    x = torch.randn(3, channels, size, size)
    cond = {a: torch.tensor([0, NULL, len(v) - 1]) for a, v in attributes.items()}
    out = model(x, torch.tensor([0.0, 500.0, 999.0]), cond)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer: training starts at eps = 0


def test_size_not_divisible_by_downsampling_is_a_usage_error():
    with pytest.raises(UsageError, match="size 10 is not divisible"):
        UNet(SHAPES_ATTRS, size=10, **{**TINY, "mults": [1, 2, 2]})


def test_dropped_attribute_uses_the_learned_null_row():
    model = _randomise_output(UNet(SHAPES_ATTRS, size=8, **TINY))
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([300.0, 700.0])
    with torch.no_grad():
        dropped = model(x, t, _cond(SHAPES_ATTRS, ([NULL, NULL], [2, 1])))
        real = model(x, t, _cond(SHAPES_ATTRS, ([0, 3], [2, 1])))
        assert not torch.allclose(dropped, real, atol=1e-4)  # the null row is not any real value's row
        table = model.cond.tables["shape"].weight  # [4 + 1, dim]; row 4 is the null row
        table[0] = table[4]
        table[3] = table[4]
        # with real rows overwritten by the null row, asking for them reproduces the dropped output exactly
        assert torch.allclose(model(x, t, _cond(SHAPES_ATTRS, ([0, 3], [2, 1]))), dropped, atol=1e-6)
        table[4] += 1.0  # and the dropped output follows the null row
        assert not torch.allclose(model(x, t, _cond(SHAPES_ATTRS, ([NULL, NULL], [2, 1]))), dropped, atol=1e-4)


def test_snap_clips_to_data_range():
    model = UNet(SHAPES_ATTRS, size=8, **TINY)
    x0 = torch.tensor([-3.0, -1.0, 0.25, 1.0, 7.0])
    assert torch.equal(model.snap(x0), torch.tensor([-1.0, -1.0, 0.25, 1.0, 1.0]))


def test_config_round_trip_through_build_model():
    model = _randomise_output(MODALITY.build_model(TINY, SHAPES_ATTRS, {"size": 8, "channels": 3}))
    again = MODALITY.build_model(model.config(), SHAPES_ATTRS, {})  # a checkpoint's config needs no data info
    again.load_state_dict(model.state_dict())
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10.0, 900.0])
    cond = _cond(SHAPES_ATTRS, ([1, NULL], [NULL, 3]))
    with torch.no_grad():
        assert torch.equal(model(x, t, cond), again.eval()(x, t, cond))
    assert model.config()["size"] == 8 and model.config()["prediction"] == "eps"


def test_presets_respect_their_parameter_budgets():
    def params(preset: str) -> int:
        p = MODALITY.preset(preset)
        model = MODALITY.build_model(p.model, SHAPES_ATTRS, {"size": p.data["size"], "channels": 3})
        return sum(q.numel() for q in model.parameters())

    assert params("smoke") < 100_000
    assert 1_000_000 <= params("quick") <= 3_000_000
    assert MODALITY.preset("full").data["size"] >= 32
