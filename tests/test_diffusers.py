"""The diffusers adapters (image.diffusers-unet, audio.diffusers-unet1d) and benchmarks.vs_diffusers' equality check.

Skipped where the optional extra is not installed; CI installs it.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="the diffusers adapters need the optional extra: pip install -e '.[diffusers]'")

import torch  # noqa: E402

from crossguide import conditions as C  # noqa: E402
from crossguide.benchmarks import vs_diffusers  # noqa: E402
from crossguide.errors import UsageError  # noqa: E402
from crossguide.modalities.audio.diffusers_unet1d import DiffusersUNet1D  # noqa: E402
from crossguide.modalities.audio.modality import MODALITY as AUDIO  # noqa: E402
from crossguide.modalities.image.diffusers_unet import DiffusersUNet2D  # noqa: E402
from crossguide.modalities.image.modality import MODALITY as IMAGE  # noqa: E402
from crossguide.pipeline import load_model  # noqa: E402
from crossguide.registry import denoiser_record  # noqa: E402
from crossguide.trainer import train  # noqa: E402

ADAPTERS = [(IMAGE, "diffusers-unet", DiffusersUNet2D), (AUDIO, "diffusers-unet1d", DiffusersUNet1D)]
TRAIN_STEPS = {"image": 60, "audio": 30}  # the waveform U-Net learns faster per step and costs 4x more per step
IDS = ["image", "audio"]


@pytest.fixture(scope="module")
def smoke_data():
    return {m.name: m.load_dataset(None, "smoke", None, 0).train for m, _, _ in ADAPTERS}


def _build(modality, name, data, seed=0, **args):
    config = modality.model_config(name, "smoke", args)
    return modality.init_model(modality.preset("smoke"), data, seed, denoiser=name, config=config)


def _random(modality, name, data):
    """An adapter whose outputs depend on its inputs: no zeroed output, condition tables at unit scale."""
    model = _build(modality, name, data, zero_out=False)
    for table in model.cond.tables.values():
        torch.nn.init.normal_(table.weight, std=1.0)
    return model.eval()


def _inputs(model, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *model.sample_shape), generator=g)
    t = torch.randint(0, 50, (n,), generator=g).float()
    full = C.all_choices(model.attributes)
    return x, t, C.stack([full[i % len(full)] for i in range(n)], model.attributes)


@pytest.mark.parametrize(("modality", "name", "kind"), ADAPTERS, ids=IDS)
def test_registered_by_name_without_importing_diffusers_until_built(modality, name, kind, smoke_data) -> None:
    assert modality.denoiser(f"{modality.name}.{name}")[0] == name
    entry = modality.denoiser(name)[1]
    assert entry.requires == ("diffusers",) and entry.package and entry.about
    assert set(entry.configs) == {"smoke", "quick", "full"}
    model = _build(modality, name, smoke_data[modality.name])
    assert isinstance(model, kind) and model.prediction == "eps"
    with pytest.raises(UsageError, match="no option 'nope'; valid: "):
        modality.model_config(name, "smoke", {"nope": 1})


@pytest.mark.parametrize(("modality", "name", "kind"), ADAPTERS, ids=IDS)
def test_forward_keeps_the_shape_and_starts_at_eps_zero(modality, name, kind, smoke_data) -> None:
    data = smoke_data[modality.name]
    model = _build(modality, name, data)
    assert model.sample_shape == tuple(data.x.shape[1:])
    x, t, cond = _inputs(model)
    out = model(x, t, cond)
    assert out.shape == x.shape and not out.abs().any()  # zero_out: training starts from eps = 0
    assert _random(modality, name, data)(x, t, cond).abs().min() >= 0  # finite and shaped
    assert torch.equal(model.snap(torch.tensor([-3.0, 0.5, 2.0])), torch.tensor([-1.0, 0.5, 1.0]))


@pytest.mark.parametrize(("modality", "name", "kind"), ADAPTERS, ids=IDS)
def test_config_round_trips_through_json_and_the_factory(modality, name, kind, smoke_data) -> None:
    model = _random(modality, name, smoke_data[modality.name])
    config = json.loads(json.dumps(model.config()))
    again = modality.build(name, config, model.attributes, {})  # the config alone sizes it (a checkpoint's)
    assert again.config() == model.config()
    assert again.state_dict().keys() == model.state_dict().keys()
    again.load_state_dict(model.state_dict())
    x, t, cond = _inputs(model)
    assert torch.equal(again.eval()(x, t, cond), model(x, t, cond))


@pytest.mark.parametrize(("modality", "name", "kind"), ADAPTERS, ids=IDS)
def test_every_attribute_conditions_and_partial_conditions_are_their_own(modality, name, kind, smoke_data) -> None:
    model = _random(modality, name, smoke_data[modality.name])
    x, t, full = _inputs(model)
    first, *rest = model.attributes
    partial = C.select(full, [first])  # the other attributes at their null rows
    outs = {"full": model(x, t, full), "partial": model(x, t, partial), "null": model(x, t, C.null_like(full))}
    for a, b in (("full", "partial"), ("full", "null"), ("partial", "null")):
        assert (outs[a] - outs[b]).abs().max() > 1e-3, (a, b)
    for attribute in model.attributes:  # changing any one attribute's value changes the prediction
        other = dict(full)
        other[attribute] = (full[attribute] + 1) % len(model.attributes[attribute])
        assert (model(x, t, other) - outs["full"]).abs().max() > 1e-3, attribute


def test_the_waveform_unet_takes_clip_lengths_its_downsampling_does_not_divide(smoke_data) -> None:
    data = smoke_data["audio"]
    config = {**AUDIO.model_config("diffusers-unet1d", "smoke"), "length": 801, "zero_out": False}
    model = AUDIO.build("diffusers-unet1d", config, data.attributes, data.info).eval()
    x, t, cond = _inputs(model)
    assert model(x, t, cond).shape == (6, 1, 801)
    with pytest.raises(UsageError, match="unknown diffusers-unet1d option 'layers'; valid: length, "):
        AUDIO.build("diffusers-unet1d", {"layers": 3}, data.attributes, data.info)


@pytest.mark.parametrize(("modality", "name", "kind"), ADAPTERS, ids=IDS)
def test_a_short_training_on_smoke_data_lowers_the_loss_and_the_checkpoint_loads_by_name(
        modality, name, kind, smoke_data, tmp_path: Path) -> None:
    data = smoke_data[modality.name]
    spec = modality.preset("smoke")
    model = _build(modality, name, data)
    meta = {"modality": modality.name, "dataset": modality.default_dataset, "preset": "smoke",
            "data_info": data.info, **denoiser_record(modality, name)}
    config = replace(modality.train_config(name, "smoke"), steps=TRAIN_STEPS[modality.name], device="cpu",
                     checkpoint_minutes=0)
    result = train(model, modality.schedule(spec), data, config, out=tmp_path / "run", meta=meta, progress=False)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    loaded, _, saved = load_model(tmp_path / "run")
    assert saved["denoiser"] == name and isinstance(loaded, kind)
    x, t, cond = _inputs(loaded)
    assert torch.equal(loaded(x, t, cond), result.ema.eval()(x, t, cond))


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_crossguide_and_a_diffusers_ddim_loop_give_the_same_samples(spacing) -> None:
    model = vs_diffusers.fresh_model("smoke", seed=0)
    schedule = IMAGE.schedule(IMAGE.preset("smoke"))
    result = vs_diffusers.compare(model, schedule, steps=8, batch=6, w=2.0, spacing=spacing)
    grids = result["timesteps"]
    assert grids["crossguide"] == grids["diffusers"]
    assert grids["diffusers_step_to"] == [*grids["diffusers"][1:], -1]  # each step moves to the next visited one
    assert result["max_abs_diff"] <= vs_diffusers.TARGET_DIFF
    unguided = vs_diffusers.compare(model, schedule, steps=8, batch=6, w=0.0, spacing=spacing)
    assert (unguided["samples"]["crossguide"] - result["samples"]["crossguide"]).abs().max() > 1e-2  # w matters


def test_linspace_spacing_visits_crossguides_timesteps_but_steps_elsewhere() -> None:
    schedule = IMAGE.schedule(IMAGE.preset("smoke"))
    sched = vs_diffusers.scheduler(schedule, "linspace", 20)
    ours = vs_diffusers.compare(vs_diffusers.fresh_model("smoke", 0), schedule, steps=20, batch=2, w=1.0,
                                spacing="linspace")["timesteps"]
    assert ours["crossguide"] == [int(t) for t in sched.timesteps] == ours["crossguide_linspace"]
    assert ours["diffusers_step_to"][:-1] != ours["diffusers"][1:]  # a fixed stride T // S, not the next timestep
