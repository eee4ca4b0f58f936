"""The cross-modality guidance study: one command, every modality, one report.

``crossguide study [--preset smoke|quick|full] [--modalities toy,image,audio,text] [--seeds N] [--out DIR]``
(also ``python -m crossguide.benchmarks.study``). For each modality, on its default dataset, it trains (or reuses) a
model and runs five sections through the same core code path (:func:`crossguide.pipeline.run_settings`):

1. ``sweep``: the paper's grid of w (Ho & Salimans 2021, Table 1) plus w = -1;
2. ``steps``: a few step counts at two values of w for two samplers;
3. ``negative``: weights below -1, read against the unconditional rate (w = -1) and chance;
4. ``mixing``: two attributes composed with a grid of weights (Liu et al. 2022), against conditioning on both
   at once and against single-attribute guidance;
5. ``p_uncond``: models trained with other unconditional-dropout rates (the paper tried 0.1, 0.2, 0.5);
6. ``rules``: every shipped guidance rule over its weight grid (classifier guidance over three or five scales),
   read as fidelity-against-adherence frontiers beside plain CFG's sweep.

Every setting runs once per sampling seed; the report gives means with 95% confidence intervals. Rerunning with
the same ``--out`` reuses finished models and settings; ``--force`` recomputes them.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from crossguide import checkpoint as ckpt
from crossguide import records, reference, rules
from crossguide.benchmarks import MODALITIES
from crossguide.errors import UsageError
from crossguide.guidance import Guidance, Term
from crossguide.pipeline import Setting, denoiser_name, prepare, run_settings
from crossguide.progress import bar
from crossguide.registry import PRESETS, Modality, Preset
from crossguide.registry import get as get_modality

SECTIONS = ("sweep", "steps", "negative", "mixing", "p_uncond", "rules")
PAPER_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0)


@dataclass(frozen=True)
class RuleRun:
    """One guidance rule, with its options and wrappers, as the rules section runs it; ``ws=None``: the plan's."""

    rule: str
    options: tuple[tuple[str, Any], ...] = ()
    interval: tuple[float, float] | None = None
    schedule: str = "constant"
    ws: tuple[float, ...] | None = None

    def guidance(self, w: float) -> Guidance:
        return Guidance(terms=(Term(w),), rule=self.rule, options=self.options, interval=self.interval,
                        schedule=self.schedule)


# The field's rules at their papers' recommended options, the same in every modality (the question is whether a rule
# that helps one data type helps the others). Plain CFG's frontier is the sweep section's.
RULES = (
    RuleRun("rescale", (("phi", 0.7),)),  # Lin et al. 2024
    RuleRun("cfg", interval=(0.28, 5.42)),  # Kynkaanniemi et al. 2024's interval for EDM2
    RuleRun("cfg", schedule="linear"),  # Wang et al. 2024
    RuleRun("threshold", (("p", 99.5),)),  # Saharia et al. 2022
    RuleRun("apg", (("eta", 0.0), ("momentum", -0.5))),  # Sadat et al. 2025
    RuleRun("cfgpp", ws=(-0.6, -0.2)),  # Chung et al. 2024: lambda = 1 + w in [0, 1]
    RuleRun("zerostar"),  # Fan et al. 2025
    RuleRun("auto"),  # Karras et al. 2024
    RuleRun("classifier", ws=(0.5, 1.0, 2.0, 5.0, 10.0)),  # Dhariwal & Nichol 2021, five scales
)


@dataclass(frozen=True)
class Plan:
    """What each section runs, per preset."""

    sweep_ws: tuple[float, ...]
    step_scales: tuple[float, ...]  # step counts as multiples of each preset's own steps (capped at its T)
    step_ws: tuple[float, ...]
    step_samplers: tuple[str, ...]
    negative_ws: tuple[float, ...]
    mix_ws: tuple[float, ...]
    p_unconds: tuple[float, ...]
    p_uncond_modalities: tuple[str, ...] | None  # None: every modality
    p_uncond_ws: tuple[float, ...]
    per_condition_scale: float  # samples per condition, as a fraction of the preset's bench setting
    rule_ws: tuple[float, ...] = (1.0, 3.0)  # weights of each rule in the rules section (w = 0 is CFG's)
    rules: tuple[RuleRun, ...] = field(default=RULES)
    seeds: int = 3  # sampling seeds per setting unless --seeds says otherwise
    max_steps: int | None = None  # sample with at most this many steps (None: each preset's own)

    def per_condition(self, spec: Preset) -> int:
        """Samples per condition in each setting: the preset's bench count times the plan's scale."""
        return max(1, round(spec.per_condition * self.per_condition_scale))

    def steps(self, spec: Preset) -> int:
        """The study's step count for a preset: its own, capped at :attr:`max_steps`."""
        return spec.steps if self.max_steps is None else min(spec.steps, self.max_steps)


PLANS = {
    "smoke": Plan(sweep_ws=(-1.0, 0.0, 2.0), step_scales=(0.5, 1.0), step_ws=(2.0,), step_samplers=("ddim", "dpmpp2m"),
                  negative_ws=(-3.0,), mix_ws=(0.0, 2.0), p_unconds=(0.1, 0.5), p_uncond_modalities=("toy",),
                  p_uncond_ws=(0.0, 2.0), per_condition_scale=0.25, rule_ws=(2.0,), seeds=1,
                  rules=tuple(RuleRun(r.rule, r.options, r.interval, r.schedule,
                                      None if r.ws is None else r.ws[-1:]) for r in RULES)),
    # sized to finish in 15 minutes on a 2-core CPU with the reference models (README, "Measured"): 2 seeds x a
    # quarter of the bench's samples; the paper's grid; each preset's own step count capped at 50 (text's DDPM
    # 200 runs at 50: text sampling was most of the study's time; README, "Measured", compares 50 with 100 steps)
    # and half of it, at w = 3, for two samplers; two negative weights; a
    # 2x2 mixing grid; every rule at w = 2 (CFG++ at lambda 0.4 and 0.8, classifier guidance at three scales); the
    # ablation adds 0.1 and 0.5 to the main models' rate (toy 0.1, image 0.15)
    "quick": Plan(sweep_ws=(-1.0, *PAPER_GRID), step_scales=(0.5, 1.0), step_ws=(3.0,),
                  step_samplers=("ddim", "dpmpp2m"), negative_ws=(-2.0, -5.0), mix_ws=(0.0, 2.0),
                  p_unconds=(0.1, 0.5), p_uncond_modalities=("toy", "image"), p_uncond_ws=(0.0, 1.0, 3.0),
                  per_condition_scale=0.25, rule_ws=(2.0,), seeds=2, max_steps=50,
                  rules=tuple(replace(r, ws=(1.0, 3.0, 10.0)) if r.rule == "classifier" else r for r in RULES)),
    "full": Plan(sweep_ws=(-1.0, *PAPER_GRID), step_scales=(0.2, 0.5, 1.0, 2.0, 5.0), step_ws=(0.0, 3.0),
                 step_samplers=("ddim", "dpmpp2m"), negative_ws=(-1.5, -2.0, -3.0, -5.0),
                 mix_ws=(0.0, 0.5, 1.0, 2.0, 3.0), p_unconds=(0.1, 0.2, 0.5), p_uncond_modalities=None,
                 p_uncond_ws=(-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0), per_condition_scale=1.0,
                 rule_ws=(0.5, 1.0, 2.0, 3.0, 4.0)),
}


def rule_runs(plan: Plan, names: Sequence[str] | None = None) -> list[RuleRun]:
    """The plan's rule runs plus every other registered rule (a plug-in) at its defaults, or only those named."""
    shipped = [*plan.rules]
    known = {r.rule for r in shipped} | {"cfg"}
    runs = shipped + [RuleRun(n) for n in rules.names() if n not in known]
    if names is None:
        return runs
    for n in names:
        if n != "cfg":
            rules.get(n)  # unknown names: a one-line error listing the valid ones
    return [r for r in runs if r.rule in names]


def section_settings(plan: Plan, spec: Preset, attributes: Sequence[str],
                     rule_names: Sequence[str] | None = None) -> dict[str, list[Setting]]:
    """The settings of every section but ``p_uncond`` for one model (it reuses the sweep shape on other models);
    ``rule_names`` limits the rules section (default: every registered rule)."""
    per = plan.per_condition(spec)
    main = {"sampler": spec.sampler, "steps": plan.steps(spec), "per_condition": per}
    counts = sorted({max(1, min(spec.T, round(f * plan.steps(spec)))) for f in plan.step_scales})
    out = {
        "sweep": [Setting(Guidance.cfg(w), section="sweep", **main) for w in plan.sweep_ws],
        "steps": [Setting(Guidance.cfg(w), s, n, section="steps", per_condition=per)
                  for s in plan.step_samplers for w in plan.step_ws for n in counts],
        "negative": [Setting(Guidance.cfg(w), section="negative", **main)
                     for w in sorted({-1.0, 0.0, *plan.negative_ws})],
        "mixing": [],
        "rules": [Setting(r.guidance(w), section="rules", **main) for r in rule_runs(plan, rule_names)
                  for w in (plan.rule_ws if r.ws is None else r.ws)],
    }
    if len(attributes) >= 2:
        a, b = attributes[0], attributes[1]
        keep = None if len(attributes) == 2 else (a, b)
        mix = {**main, "section": "mixing", "keep": keep}
        out["mixing"] = (
            [Setting(Guidance(terms=(Term(w1, (a,)), Term(w2, (b,)))), **mix) for w1 in plan.mix_ws
             for w2 in plan.mix_ws]
            + [Setting(Guidance.cfg(w), **mix) for w in plan.mix_ws]  # both attributes in one condition
            + [Setting(Guidance(terms=(Term(w, (attr,)),)), **mix) for attr in (a, b) for w in plan.mix_ws]
        )
    return out


@dataclass(frozen=True)
class ModelRun:
    """One model the study trains for a modality: the main one, a p_uncond ablation model, or the main model's
    recipe with another training seed (``--training-seeds``)."""

    kind: str  # "main", "p_uncond" or "training_seed"
    overrides: tuple[tuple[str, Any], ...]  # TrainConfig fields changed from the preset's
    path: Path  # its run directory

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.overrides)


def study_models(plan: Plan, name: str, spec: Preset, out: Path, training_seeds: int = 1) -> list[ModelRun]:
    """Every model the study trains for one modality: the main model, the p_uncond ablation models, and
    ``training_seeds - 1`` more copies of the main model trained with the next seeds."""
    runs = [ModelRun("main", (), out / name)]
    if plan.p_uncond_modalities is None or name in plan.p_uncond_modalities:
        runs += [ModelRun("p_uncond", (("p_uncond", p),), out / name / f"p_uncond_{p:g}")
                 for p in plan.p_unconds if p != spec.train.p_uncond]
    seeds = [spec.train.seed + k for k in range(1, training_seeds)]
    runs += [ModelRun("training_seed", (("seed", s),), out / name / f"train_seed_{s}") for s in seeds]
    return runs


def ablation_settings(plan: Plan, spec: Preset) -> list[Setting]:
    per = plan.per_condition(spec)
    return [Setting(Guidance.cfg(w), spec.sampler, plan.steps(spec), section="p_uncond", per_condition=per)
            for w in plan.p_uncond_ws]


class Training(NamedTuple):
    """The training a study model still needs before its settings (:func:`training_left`)."""

    steps: int  # steps left
    seconds_per_step: float | None  # None: unknown until a training is timed
    unmatched: int  # steps left if the reference model of its name turns out not to match (prepare then trains)


def training_left(modality: Modality, run: ModelRun, preset: str, *, denoiser: str | None = None,
                  model_args: Mapping[str, Any] | None = None, fresh: bool = False) -> Training:
    """What ``run``'s model (``denoiser`` with ``model_args``, default the modality's own) still has to train:
    none where a reference model of its name stands in (references are on and it has no checkpoint of its own;
    :func:`crossguide.pipeline.prepare` checks the fingerprint) or its checkpoint is finished, else its recipe's
    steps less those of a checkpoint to resume; a step's seconds from the reference card of its name or of the
    modality's own denoiser (its examples per second at the recipe's batch size). ``fresh``: its checkpoint is
    about to be removed (``--force``)."""
    overrides = dict(run.overrides)
    recipe = replace(modality.train_config(denoiser, preset), **overrides)
    cards = {a.name: a.entry for a in reference.artifacts() if a.entry.get("kind") == "denoiser"}
    own = denoiser_name(modality.name, modality.default_dataset, preset, overrides, denoiser, model_args)
    model = run.path / "model"
    resumed = not fresh and ckpt.exists(model)
    left = max(0, recipe.steps - (json.loads((model / "training.json").read_text())["step"] if resumed else 0))
    referenced = not resumed and own in cards and reference.enabled()  # off under --from-scratch
    card = cards.get(own) or cards.get(denoiser_name(modality.name, modality.default_dataset, preset))
    speed = (card or {}).get("train", {}).get("examples_per_s")
    return Training(0 if referenced else left, recipe.batch_size / speed if speed else None, left)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def time_left(settings: Mapping[str, int], seconds_per_setting: Mapping[str, float],
              training: Sequence[Training]) -> str:
    """The study's estimate of its time left, as its progress bar shows it: each modality's settings still to
    compute at its mean seconds per setting so far (a modality not started yet: the mean of those that have),
    plus the training still to do, each model's steps left at its seconds per step. What cannot be timed yet is
    named, not guessed."""
    rates = list(seconds_per_setting.values())
    sampling, untimed = 0.0, 0
    for m, n in settings.items():
        rate = seconds_per_setting.get(m, sum(rates) / len(rates) if rates else None)
        sampling += n * (rate or 0.0)
        untimed += n * (rate is None)
    models = [t for t in training if t.steps > 0]
    train_s = sum(t.steps * t.seconds_per_step for t in models if t.seconds_per_step is not None)
    unknown = sum(t.seconds_per_step is None for t in models)
    training_text = f"{len(models)} model{'s' * (len(models) > 1)} to train"
    if sampling + train_s == 0 and (untimed or unknown):
        return "time left not known yet: " + ", ".join([training_text] * bool(models)
                                                       + [f"{untimed} settings"] * bool(untimed))
    text = f"{'>=' if untimed or unknown else '~'}{_duration(sampling + train_s)} left"
    if models:
        text += f", {training_text}" + (f" ({unknown} not timed yet)" if unknown else f" (~{_duration(train_s)})")
    return text + (f", {untimed} settings not timed yet" if untimed else "")


@dataclass
class Estimate:
    """What the study's time-left estimate (:func:`time_left`) is made of, updated as the study goes."""

    # model folder -> its modality and the settings (times seeds) it still has to compute: counted from stand-in
    # attribute names until its dataset is loaded, from the real ones (which the ids of mixing settings name) after
    settings: dict[Path, tuple[str, int]]
    training: dict[Path, tuple[str, Training]]  # model folder -> its modality and what it still has to train
    spent: dict[str, tuple[float, int]] = field(default_factory=dict)  # modality -> seconds, settings computed
    # (in this run, after what its records say of settings computed before)

    def text(self) -> str:
        left: dict[str, int] = {}
        for m, n in self.settings.values():
            left[m] = left.get(m, 0) + n
        return time_left(left, {m: t / n for m, (t, n) in self.spent.items() if n},
                         [t for _, t in self.training.values()])

    def prepared(self, m: str, path: Path, trained: bool, seconds_per_step: float | None, settings_left: int) -> None:
        """Model ``path`` of modality ``m`` is ready, with ``settings_left`` to compute; ``trained``: it trained (or
        resumed) here at ``seconds_per_step``, the speed the modality's other models are then counted at; if a
        reference model was expected to stand in, it did not match, and none of the modality's is counted on any
        more."""
        self.settings[path] = (m, settings_left)
        _, expected = self.training.pop(path)
        for p, (mm, t) in self.training.items():
            if mm == m and trained:
                self.training[p] = (mm, Training(t.steps if expected.steps else t.unmatched,
                                                 seconds_per_step or t.seconds_per_step, t.unmatched))

    def on_done(self, path: Path, known: set[str], then: Callable[[], None]) -> Callable[[Setting, int], None]:
        """A :func:`crossguide.pipeline.run_settings` callback that times each setting of model ``path`` it
        computes (the ``known`` ids were reused, not computed), then calls ``then``."""
        clock = time.perf_counter()
        m = self.settings[path][0]

        def done(setting: Setting, seed: int) -> None:
            nonlocal clock
            now = time.perf_counter()
            if setting.id(seed) not in known:
                seconds, count = self.spent.get(m, (0.0, 0))
                self.spent[m] = (seconds + now - clock, count + 1)
                self.settings[path] = (m, max(0, self.settings[path][1] - 1))
            clock = now
            then()

        return done


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("crossguide", "torch", "torchaudio", "transformers", "tokenizers", "librosa", "numpy", "scipy",
                "scikit-learn", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _ids(settings: Sequence[Setting]) -> list[str]:
    """Setting ids without the seed suffix."""
    return [s.id(0).rsplit("-s", 1)[0] for s in settings]


def run_study(
    out: Path,
    *,
    preset: str = "quick",
    modalities: Sequence[str] = MODALITIES,
    seeds: int | None = None,
    training_seeds: int = 1,
    rule_names: Sequence[str] | None = None,
    denoisers: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Run (or resume) the study into ``out`` and write ``report.html`` and ``report.md``; returns the HTML path.
    ``rule_names`` limits the rules section (default: every registered rule); ``training_seeds`` > 1 trains that
    many models per modality (training seeds 0, 1, ...) and runs the sweep on each, for the between-model spread;
    ``denoisers`` gives a modality's denoiser and its ``--model-args`` (default: the modality's own)."""
    if preset not in PLANS:
        raise UsageError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    seeds = PLANS[preset].seeds if seeds is None else seeds
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    if training_seeds < 1:
        raise UsageError(f"--training-seeds must be >= 1, got {training_seeds}")
    mods = [get_modality(m) for m in modalities]  # unknown names fail before any work
    if preset == "smoke":
        print("smoke preset: models train for a few dozen steps, so its numbers mean nothing; it checks that the "
              "code runs end to end (use --preset quick for results)", file=sys.stderr)
    rule_runs(PLANS[preset], rule_names)
    plan, seed_list = PLANS[preset], list(range(seeds))
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "study.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() and not force else {}
    started = time.time()

    def model_runs(name: str, spec: Preset) -> list[ModelRun]:
        return study_models(plan, name, spec, out, training_seeds)

    def sections_of(name: str, spec: Preset, attrs: Sequence[str], run: ModelRun) -> dict[str, list[Setting]]:
        if run.kind == "training_seed":  # the sweep again, on a model trained with another seed
            return {"sweep": section_settings(plan, spec, attrs, rule_names)["sweep"]}
        ablated = any(r.kind == "p_uncond" for r in model_runs(name, spec))
        sections = section_settings(plan, spec, attrs, rule_names) if run.kind == "main" else {}
        return {**sections, "p_uncond": ablation_settings(plan, spec)} if ablated else sections

    def planned(sections: Mapping[str, Sequence[Setting]]) -> list[str]:
        """The ids of the settings (times seeds) of a model's sections, section by section: sections share some
        settings (w = 0 is in several), which run once."""
        return [s.id(seed) for settings in sections.values() for s in settings for seed in seed_list]

    def left(run_dir: Path, sections: Mapping[str, Sequence[Setting]]) -> int:
        return len(set(planned(sections)) - (set() if force else _recorded(run_dir)))

    # attribute names are known once a dataset is loaded; two stand-ins give the right count
    stand_in = {run.path: (m.name, sections_of(m.name, m.preset(preset), ["a", "b"], run))
                for m in mods for run in model_runs(m.name, m.preset(preset))}
    total = sum(len(planned(sections)) for _, sections in stand_in.values())
    study = {"preset": preset, "seeds": seeds, "training_seeds": training_seeds, "plan": asdict(plan),
             "versions": versions(),
             "modalities": meta.get("modalities", {}), "runs": meta.get("runs", [])}
    # the time left counts the training still to do and the settings not yet recorded (tqdm's own estimate, at
    # the rate of settings so far, knew of neither)
    chosen = {m.name: (denoisers or {}).get(m.name, (None, {})) for m in mods}  # denoiser, model args
    estimate = Estimate(
        settings={path: (m, left(path, sections)) for path, (m, sections) in stand_in.items()},
        training={run.path: (m.name, training_left(m, run, preset, denoiser=chosen[m.name][0],
                                                   model_args=chosen[m.name][1], fresh=force))
                  for m in mods for run in model_runs(m.name, m.preset(preset))},
        spent={m.name: _recorded_seconds([run.path for run in model_runs(m.name, m.preset(preset))]) for m in mods})
    pbar = bar(total=total, desc="study", enabled=progress, unit="setting",
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} settings [{elapsed}{postfix}]")

    def advance() -> None:
        pbar.set_postfix_str(estimate.text(), refresh=False)
        pbar.update(1)

    pbar.set_postfix_str(estimate.text())
    computed = 0
    try:
        for m in mods:
            spec = m.preset(preset)
            entry: dict[str, Any] = {"sections": {}, "p_uncond": {}, "training_seeds": {}, "sampler": spec.sampler,
                                     "steps": plan.steps(spec)}
            for run in model_runs(m.name, spec):
                run_dir = run.path
                if force:
                    shutil.rmtree(run_dir / "model", ignore_errors=True)
                pbar.set_description(f"{m.name}: prepare {run.label}".rstrip())
                began = time.perf_counter()
                denoiser, model_args = (denoisers or {}).get(m.name, (None, {}))
                ctx = prepare(m.name, preset=preset, model_dir=run_dir / "model", seed=0, progress=progress,
                              train_overrides=dict(run.overrides) or None, denoiser=denoiser, model_args=model_args)
                entry["prepare_s"] = entry.get("prepare_s", 0.0) + time.perf_counter() - began
                sections = sections_of(m.name, spec, list(ctx.attributes), run)
                speed = ctx.train_stats.get("examples_per_s")
                estimate.prepared(m.name, run.path, ckpt.exists(run_dir / "model"),
                                  ctx.train_config["batch_size"] / speed if speed else None, left(run_dir, sections))
                if run.kind == "training_seed":
                    entry["training_seeds"][str(ctx.train_config["seed"])] = {
                        "dir": run_dir.relative_to(out).as_posix(), "settings": _ids(sections["sweep"]),
                        "model": ctx.model_id}
                if run.kind == "main":
                    entry.update(dataset=ctx.dataset, model=ctx.model_id, denoiser=denoiser or m.default_denoiser,
                                 attributes=ctx.attributes,
                                 evaluator=ctx.evaluator.info, train_stats=ctx.train_stats,
                                 p_uncond_main=ctx.train_config["p_uncond"])
                    entry["sections"] = {name: _ids(settings) for name, settings in sections.items()}
                if "p_uncond" in sections:
                    entry["p_uncond"][f"{ctx.train_config['p_uncond']:g}"] = {
                        "dir": run_dir.relative_to(out).as_posix(), "settings": _ids(sections["p_uncond"])}
                for section, settings in sections.items():
                    pbar.set_description(f"{m.name}: {section}")
                    before = _count(run_dir)
                    known = set() if force else _recorded(run_dir)
                    run_settings(ctx, settings, seed_list, run_dir, force=force, progress=False,
                                 on_done=estimate.on_done(run_dir, known, advance))
                    computed += _count(run_dir) - before
                del ctx
            study["modalities"][m.name] = entry
            _write_json(meta_path, study)
    finally:
        pbar.close()
        study["runs"] = [*study["runs"], {"started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                                          "seconds": time.time() - started, "settings_computed": computed,
                                          "modalities": [m.name for m in mods]}]
        _write_json(meta_path, study)
    from crossguide.benchmarks.report import write_report

    return write_report(out)


def setting_seconds(record: dict[str, Any]) -> float:
    """The seconds a recorded setting took to sample and evaluate."""
    return record["wall_s"] + record.get("extra", {}).get("eval_s", 0.0)


def _recorded_seconds(run_dirs: Sequence[Path]) -> tuple[float, int]:
    """Seconds the settings recorded in ``run_dirs`` took, and their number: a resumed study's first estimate of
    its settings' time."""
    recs = [r for d in run_dirs for r in records.read(d / "records.jsonl")]
    return sum(map(setting_seconds, recs)), len(recs)


def _recorded(run_dir: Path) -> set[str]:
    """The ids of the settings recorded in ``run_dir``."""
    return {r["setting"] for r in records.read(run_dir / "records.jsonl")}


def _count(run_dir: Path) -> int:
    path = run_dir / "records.jsonl"
    return sum(1 for _ in open(path)) if path.exists() else 0


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    from crossguide.cli import main as cli_main

    return cli_main(["study", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
