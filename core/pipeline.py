"""From a modality and a preset to result records: train (or load) a model, build its evaluator, and run
guidance settings, writing samples, pictures, a sample manifest and one record per setting.

This is the one code path every benchmark and the cross-modality study go through.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from crossguide import checkpoint as ckpt
from crossguide import conditions as C
from crossguide import metrics as M
from crossguide import records, reference, samplers
from crossguide.classifier import NoiseClassifier, fit_classifier
from crossguide.data import Splits
from crossguide.denoiser import Denoiser
from crossguide.errors import UsageError
from crossguide.evaluation import Evaluation, Evaluator, evaluate, reference_diversity
from crossguide.guidance import Guidance
from crossguide.judge import final_loss
from crossguide.registry import Modality, Preset, denoiser_record
from crossguide.registry import get as get_modality
from crossguide.sampling import generate
from crossguide.schedules import Schedule, from_tensors
from crossguide.schedules import make as make_schedule
from crossguide.trainer import TrainConfig, train


def cache_dir() -> Path:
    """Where evaluators and generated datasets are cached (``$CROSSGUIDE_CACHE``, default ``~/.cache/crossguide``)."""
    return Path(os.environ.get("CROSSGUIDE_CACHE", Path.home() / ".cache" / "crossguide"))


@dataclass
class Context:
    """A trained model with everything needed to run and evaluate guidance settings on its dataset."""

    modality: Modality
    dataset: str
    preset_name: str
    preset: Preset
    splits: Splits
    model: Denoiser  # EMA weights
    schedule: Schedule
    evaluator: Evaluator
    reference: Tensor  # evaluator features of the real test set [N, D], rows in a fixed random order
    reference_diversity: float
    model_id: str
    train_config: dict[str, Any]  # the TrainConfig the model was trained with (p_uncond, steps, ...)
    train_stats: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None  # the checkpoint directory the weights come from (trained, given or a reference)
    work_dir: Path | None = None  # where models derived from it are trained (the classifier: beside it)
    model_source: str = "trained"  # "trained", "checkpoint" (given) or "reference" (crossguide.reference)
    helper_models: dict[str, Any] = field(default_factory=dict)  # built on first use: name -> module
    helper_info: dict[str, Any] = field(default_factory=dict)  # name -> what records say about it

    @property
    def attributes(self) -> dict[str, list[str]]:
        return self.splits.train.attributes

    def helpers(self, guidance: Guidance, *, progress: bool = True) -> dict[str, Any]:
        """The extra models ``guidance``'s rule needs (:func:`helper_models`), built on first use."""
        names = guidance.make_rule().helpers
        missing = [n for n in names if n not in self.helper_models]
        if missing:
            built = helper_models(missing, modality=self.modality, dataset=self.dataset, preset_name=self.preset_name,
                                  splits=lambda: self.splits, model=self.model, schedule=self.schedule,
                                  model_dir=self.model_dir, work_dir=self.work_dir, progress=progress)
            for name, (module, info) in built.items():
                self.helper_models[name], self.helper_info[name] = module, info
        return {n: self.helper_models[n] for n in names}


@dataclass(frozen=True)
class Setting:
    """One point of a study: guidance, sampler and steps (samples for every full condition of the dataset)."""

    guidance: Guidance
    sampler: str
    steps: int
    section: str = "sweep"
    per_condition: int | None = None  # None: the preset's
    keep: tuple[str, ...] | None = None  # requested attributes (others left null); None: all

    def __post_init__(self) -> None:
        samplers.get(self.sampler)
        if not isinstance(self.steps, int) or self.steps < 1:
            raise UsageError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.per_condition is not None and self.per_condition < 1:
            raise UsageError(f"per_condition must be >= 1, got {self.per_condition}")

    def id(self, seed: int) -> str:
        g = self.guidance
        terms = "+".join(f"{'all' if t.attributes is None else '.'.join(t.attributes)}_w{t.w:g}" for t in g.terms)
        extra = "" if g.rule == "cfg" else f"-{g.rule}"
        extra += "".join(f"_{k}{v}" for k, v in g.changed_options())
        if g.interval is not None:
            extra += f"-int{g.interval[0]:g}_{g.interval[1]:g}"
        if g.schedule != "constant":
            extra += f"-{g.schedule}{g.schedule_range[0]:g}_{g.schedule_range[1]:g}"
        if self.per_condition is not None:
            extra += f"-n{self.per_condition}"
        if self.keep is not None:
            extra += f"-req_{'.'.join(self.keep)}"
        # the section is not part of the id: sections that need the same setting share its record
        raw = f"{terms}{extra}-{self.sampler}{self.steps}-s{seed}"
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", raw)


# config.json fields that loading and the pipeline read from a checkpoint, with their JSON types
CONFIG_FIELDS: dict[str, type] = {"modality": str, "attributes": dict, "model": dict, "schedule": dict, "train": dict,
                                  "dataset": str, "preset": str, "data_info": dict}
REQUIRED_CONFIG = ("modality", "attributes", "model", "schedule", "train")
JSON_TYPES = {str: "string", dict: "object"}
MAX_SCHEDULE_T = 100_000  # training steps of a checkpoint's noise schedule (1000 in every preset)


def load_model(path: Path, weights: str = "ema") -> tuple[Denoiser, Schedule, dict[str, Any]]:
    """The denoiser, its schedule and its config from a checkpoint directory; ``weights``: "ema" (for sampling)
    or "weak" (the early EMA weights autoguidance guides away from).

    The files are verified against the manifest and ``config.json``'s fields against their types first, so an
    error while rebuilding the model comes from their content (a config edited by hand, weights of another
    model): always a :class:`~crossguide.checkpoint.CheckpointError` naming the checkpoint, never a bare KeyError."""
    config = ckpt.read_config(path)
    for key, kind in CONFIG_FIELDS.items():
        if not isinstance(config.get(key, kind()), kind) or (key in REQUIRED_CONFIG and key not in config):
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r}: config.json needs {key!r} as a JSON "
                                       f"{JSON_TYPES[kind]}, got {json.dumps(config.get(key))[:80]}")
    steps = config["schedule"].get("T")
    if type(steps) is not int or not 1 <= steps <= MAX_SCHEDULE_T:  # T sizes the schedule's tensors
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r}: config.json schedule T must be an integer in "
                                   f"[1, {MAX_SCHEDULE_T}], got {json.dumps(steps)[:80]}")
    modality = get_modality(config["modality"])
    denoiser = config.get("denoiser")  # absent in checkpoints made before denoisers had names: the default
    if denoiser is not None and denoiser not in modality.denoisers:
        package = config.get("denoiser_package") or "unknown"
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r} holds denoiser {modality.name}.{denoiser} from package "
                                   f"{package!r}, which is not installed here; install it (or register the "
                                   f"denoiser) to load it; installed: {', '.join(modality.denoisers)}")
    modality.denoiser(denoiser)[1].check_installed(f"{modality.name}.{denoiser or modality.default_denoiser}")
    try:
        model = modality.build(denoiser, config["model"], config["attributes"], config.get("data_info", {}))
        tensors = ckpt.load(path, stems=(weights, "schedule")).tensors
        if weights not in tensors:
            why = (" (autoguidance needs the early EMA weights of a run trained with weak_at > 0); retrain it"
                   if weights == "weak" else "; the checkpoint is incomplete")
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r} keeps no {weights!r} weights{why}")
        model.load_state_dict(tensors[weights])
        name = config["schedule"]["name"]
        # the saved table when there is one (checkpoints before it rebuild the schedule by name)
        schedule = from_tensors(name, tensors["schedule"]) if "schedule" in tensors else make_schedule(name, steps)
        if steps != schedule.T:
            raise ckpt.CheckpointError(f"checkpoint {str(path)!r}: its schedule table has {schedule.T} steps, "
                                       f"config.json says {steps}")
        return model.eval(), schedule, config
    except ckpt.CheckpointError:
        raise
    except UsageError as e:  # a name in config.json this version does not know (a schedule, a prediction type)
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r}: config.json: {e}") from e
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else f"{e.__class__.__name__}: {e}"
        raise ckpt.CheckpointError(f"checkpoint {str(path)!r} does not describe a model this version can rebuild "
                                   f"({' '.join(what.split())[:300]})") from e


def helper_models(
    names: Sequence[str],
    *,
    modality: Modality,
    dataset: str,
    preset_name: str,
    splits: Callable[[], Splits],
    model: Denoiser,
    schedule: Schedule,
    model_dir: Path | None,
    work_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The extra models a guidance rule needs, by name, each with what records say about it:

    * ``weak``: autoguidance's weaker model, the early EMA weights kept in the model's checkpoint;
    * ``classifier``: classifier guidance's noise classifier, trained on the model's dataset (``splits``, loaded
      only if needed) into ``<work_dir>.classifier`` (default ``work_dir = model_dir``), or loaded from there or
      from its reference artifact.
    """
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    if not names:
        return out
    unknown = [n for n in names if n not in ("weak", "classifier")]
    if unknown:
        raise UsageError(f"a guidance rule needs a {unknown[0]!r} model, which crossguide cannot provide; "
                         "valid: classifier, weak")
    if model_dir is None:
        raise UsageError(f"the {' and '.join(names)} model(s) live beside the model's checkpoint, and there is none")
    device = next(iter(model.parameters())).device
    if "weak" in names:
        weak, _, config = load_model(model_dir, "weak")
        out["weak"] = weak.to(device), {"kind": "early EMA weights",
                                        "step": TrainConfig.from_json(config["train"]).weak_step}
    if "classifier" in names:
        spec, data = modality.preset(preset_name), splits()
        attrs, info, shape = data.train.attributes, data.train.info, tuple(model.sample_shape)

        def build() -> NoiseClassifier:
            backbone, dim = modality.classifier_backbone(spec.classifier, info, shape)
            return NoiseClassifier(backbone, dim, attrs, shape, {"backbone": spec.classifier})

        meta = {"kind": "noise-classifier", "modality": modality.name, "dataset": dataset, "preset": preset_name,
                "data_info": info}
        where = work_dir or model_dir
        clf, clf_info = fit_classifier(build, schedule, data, model.encode, spec.classifier_train,
                                       where.with_name(where.name + ".classifier"), meta=meta,
                                       name=f"classifier-{modality.name}-{dataset}-{preset_name}", progress=progress)
        out["classifier"] = clf.to(device), clf_info
    return out


def prepare(
    modality_name: str,
    *,
    dataset: str | None = None,
    preset: str = "quick",
    data: Path | None = None,
    seed: int = 0,
    model_dir: Path,
    checkpoint: Path | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    denoiser: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Context:
    """Load the dataset, train (resuming ``model_dir`` if it exists) or load ``checkpoint``, build the evaluator.
    ``denoiser`` (a registered name, default the modality's own) and ``model_args`` (overrides of its preset
    config) choose the model to train."""
    modality = get_modality(modality_name)
    if checkpoint is not None:
        config = ckpt.read_config(checkpoint)
        if config.get("modality") != modality.name:
            raise ckpt.CheckpointError(
                f"checkpoint {str(checkpoint)!r} is a {config.get('modality')!r} model, not {modality.name!r}"
            )
        dataset = dataset or config.get("dataset")
        preset = config.get("preset", preset)
    dataset = dataset or modality.default_dataset
    spec = modality.preset(preset)
    splits = modality.load_dataset(dataset, preset, data, seed)
    work_dir, source = model_dir, "trained"
    if checkpoint is not None:
        model, schedule, config = load_model(checkpoint)
        if model.attributes != splits.train.attributes:
            raise ckpt.CheckpointError(
                f"checkpoint attributes {model.attributes} do not match dataset {dataset!r}: {splits.train.attributes}"
            )
        model_id, stats, train_config, model_dir = str(checkpoint), {}, config["train"], checkpoint
        source = "checkpoint"
    else:
        overrides = dict(train_overrides or {})
        tc = replace(modality.train_config(denoiser, preset), **overrides)
        model = modality.init_model(spec, splits.train, tc.seed, denoiser=denoiser,
                                    config=modality.model_config(denoiser, preset, model_args))
        schedule = modality.schedule(spec)
        meta = {"modality": modality.name, "dataset": dataset, "preset": preset, "data_info": splits.train.info,
                **denoiser_record(modality, denoiser)}
        name = denoiser_name(modality.name, dataset, preset, overrides, meta["denoiser"], model_args)
        # the model's identity: the default denoiser's name and any providing package stay out, so the reference
        # artifacts fingerprinted before denoisers had names still match
        named = {} if meta["denoiser"] == modality.default_denoiser else {"denoiser": meta["denoiser"]}
        identity = {**{k: v for k, v in meta.items() if k not in ("denoiser", "denoiser_package")}, **named}
        key = reference.fingerprint(splits.train.x, *splits.train.cond.values(), meta=identity, model=model.config(),
                                    schedule=[schedule.name, schedule.T], train=reference.trained_by(tc))
        artifact = None if ckpt.exists(model_dir) else reference.find(name, key)
        if artifact is not None:
            model, schedule, config = load_model(artifact.path)
            model_id, stats, train_config = artifact.id, artifact.entry.get("train", {}), config["train"]
            model_dir, source = artifact.path, "reference"
        else:
            result = train(model, schedule, splits.train, tc, out=model_dir, meta=meta, progress=progress,
                           desc=f"train {modality.name}" + "".join(f" {k}={v}" for k, v in overrides.items()))
            model, stats, train_config = result.ema, result.stats, asdict(tc)
            model_id = f"{model_dir.parent.name}/{model_dir.name}@{result.step}"
            if result.losses:
                stats = {**stats, "final_loss": final_loss(result.losses)}
            # ablation models (trained with overrides) are never autoguidance's base: no weak copy
            stems = ("config", "ema", "schedule") if overrides else ("config", "ema", "weak", "schedule")
            reference.offer(name, "denoiser", key, model_dir, stems=stems,
                            card={"seed": tc.seed, "train_s": stats.get("wall_s"), "train": stats,
                                  "final_loss": stats.get("final_loss")})
    evaluator = modality.evaluator(splits, preset, cache_dir())
    with torch.no_grad():
        real = evaluator.features(splits.test.x).float()
    # a fixed random order, so that the first n rows (the equal-count comparison set of every setting with n
    # samples) are a random subset of the test set rather than its first conditions
    real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))]
    return Context(
        modality, dataset, preset, spec, splits, model, schedule, evaluator, real,
        reference_diversity(evaluator, splits.test.x, splits.test.cond), model_id, train_config, stats, model_dir,
        work_dir, source,
    )


def denoiser_name(modality: str, dataset: str, preset: str, train_overrides: Mapping[str, Any] | None = None,
                  denoiser: str | None = None, model_args: Mapping[str, Any] | None = None) -> str:
    """The reference-artifact name (:mod:`crossguide.reference`) of the denoiser :func:`prepare` trains: the
    modality's own unless ``denoiser`` names another, changed by ``train_overrides`` and ``model_args``."""
    own = denoiser is None or denoiser == get_modality(modality).default_denoiser
    changed = "".join(f"-{k}{v}" for k, v in sorted({**(train_overrides or {}), **(model_args or {})}.items()))
    return f"denoiser-{modality}-{dataset}-{preset}{'' if own else '-' + denoiser}{changed}"


def requests(attributes: Mapping[str, Sequence[str]], per_condition: int,
             keep: Sequence[str] | None = None) -> list[dict[str, int]]:
    """Every condition on the ``keep`` attributes (default all), ``per_condition`` times each, grouped."""
    return [c for c in C.all_choices(attributes, keep) for _ in range(per_condition)]


def run_setting(ctx: Context, setting: Setting, seed: int, out: Path, *, progress: bool = False) -> dict[str, Any]:
    """Generate, evaluate and write one setting; append and return its record."""
    per = setting.per_condition or ctx.preset.per_condition
    choices = requests(ctx.attributes, per, setting.keep)
    cond = C.stack(choices, ctx.attributes)
    helpers = ctx.helpers(setting.guidance, progress=progress)
    gen = generate(ctx.model, ctx.schedule, cond, setting.guidance, sampler=setting.sampler, steps=setting.steps,
                   seed=seed, batch_size=ctx.preset.batch, bf16=ctx.preset.train.bf16, helpers=helpers,
                   progress=progress)
    t0 = time.perf_counter()
    ev = evaluate(ctx.evaluator, gen.samples, cond, ctx.reference)
    metrics, judged = ev.metrics, ev.judged
    metrics["diversity_rel"] = metrics["diversity"] / ctx.reference_diversity
    eval_s = time.perf_counter() - t0
    sid = setting.id(seed)
    sample_dir = out / "samples"
    write_evaluation(sample_dir / f"{sid}.eval.safetensors", ev)
    labels = [C.names(c, ctx.attributes) for c in choices]
    info = ctx.splits.train.info
    paths = ctx.modality.write_samples(gen.samples, labels, sample_dir / sid, info)
    ctx.modality.draw(gen.samples, labels, sample_dir / f"{sid}.png", _title(ctx, setting), info)
    extras = ctx.modality.describe(gen.samples, info)
    g = setting.guidance
    records.write_jsonl(sample_dir / "manifest.jsonl", (
        {"path": f"{sid}/{p}", "condition": lab, "w": g.w, "terms": g.to_json()["terms"], "seed": seed,
         "setting": sid, **ex}
        for p, lab, ex in zip(paths, labels, extras, strict=True)
    ))
    confusion = {
        a: M.confusion(cond[a], judged[a], len(vals)) for a, vals in ctx.attributes.items()
    }
    record = {
        "modality": ctx.modality.name, "dataset": ctx.dataset, "model": ctx.model_id, "preset": ctx.preset_name,
        "rule": g.rule, "rule_options": dict(g.options), "rule_label": g.label(), "w": g.w,
        "terms": g.to_json()["terms"], "guidance": g.to_json(),
        "sampler": setting.sampler, "steps": setting.steps, "nfe": gen.nfe, "seed": seed, "n": len(choices),
        "n_real": len(ev.real), "feature_dim": ev.features.shape[1], "metrics": metrics,
        "wall_s": gen.wall_s, "samples_per_s": len(choices) / gen.wall_s,
        "section": setting.section, "setting": sid, "picture": f"samples/{sid}.png",
        "judge": ctx.evaluator.info.get("id", "unknown"),
        "sources": {"model": ctx.model_source, "judge": ctx.evaluator.info.get("source", "trained"),
                    **{name: ctx.helper_info[name].get("source", "trained") for name in helpers}},
        "extra": {
            "eval_s": eval_s, "p_uncond": ctx.train_config.get("p_uncond"), "confusion": confusion,
            "evaluator": ctx.evaluator.info, "reference_diversity": ctx.reference_diversity, "train": ctx.train_stats,
            "helpers": {name: ctx.helper_info[name] for name in helpers},
        },
    }
    return records.append(out / "records.jsonl", record)


def write_evaluation(path: Path, ev: Evaluation) -> None:
    """The per-sample data of one setting's evaluation (judge features, joint adherence, the real features they
    were compared with), which the report's bootstrap intervals resample (:mod:`crossguide.stats`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"features": ev.features, "correct": ev.correct, "real": ev.real}
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path))


def read_evaluation(path: Path) -> dict[str, Tensor]:
    """What :func:`write_evaluation` wrote: ``features`` [N, D], ``correct`` [N], ``real`` [N, D] (float32)."""
    return load_file(str(path))


def _title(ctx: Context, setting: Setting) -> str:
    g = setting.guidance
    return (f"{ctx.modality.name}/{ctx.dataset}: {g.terms_label()} ({g.label()}, {setting.sampler} "
            f"{setting.steps} steps)")


def run_settings(
    ctx: Context, settings: Sequence[Setting], seeds: Sequence[int], out: Path, *, force: bool = False,
    progress: bool = True, on_done: Any = None,
) -> list[dict[str, Any]]:
    """Run every (setting, seed) not already recorded in ``out/records.jsonl`` (all of them with ``force``)."""
    wanted = {s.id(seed) for s in settings for seed in seeds}
    if force:
        _forget(out, wanted)
    done = {r["setting"]: r for r in records.read(out / "records.jsonl")}
    results = []
    for setting in settings:
        for seed in seeds:
            sid = setting.id(seed)
            results.append(done[sid] if sid in done else run_setting(ctx, setting, seed, out, progress=progress))
            if on_done is not None:
                on_done(setting, seed)
    return results


def _forget(out: Path, setting_ids: set[str]) -> None:
    """Drop the records and manifest lines of settings about to be recomputed."""
    for path in (out / "records.jsonl", out / "samples" / "manifest.jsonl"):
        kept = [r for r in records.read(path) if r.get("setting") not in setting_ids]
        if path.exists():
            records.write_jsonl(path, kept, mode="w")


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")


__all__ = ["Context", "Setting", "TrainConfig", "load_model", "prepare", "requests", "run_setting", "run_settings"]
