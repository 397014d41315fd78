"""Frozen configuration, the three profiles, and the stable hash that keys the run store.

A notebook (or a user) names a profile and overrides any flat parameter; ``None`` means "take it
from the profile". Unknown profiles and unknown parameters are errors, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
from dataclasses import dataclass, fields
from typing import Any, Mapping, MutableMapping

from miakit.core import colab


@dataclass(frozen=True)
class DataConfig:
    """Which images, at which size, and how they are split into members and nonmembers."""

    dataset: str  # "digits", "fashion-mnist[:<dir>]", "folder:<path>", "cifar10" or "hf:<source>[@<split>]"
    resolution: int
    n_members: int
    n_nonmembers: int
    split_seed: int
    val_fraction: float  # share of members/nonmembers used to choose attack settings


@dataclass(frozen=True)
class TargetConfig:
    """How the target diffusion model is built and trained."""

    family: str
    model: str  # UNet preset: tiny / small / paper
    iterations: int  # optimizer steps; 0 = the untrained network (a chance-level baseline for tests)
    batch_size: int
    lr: float
    warmup: int
    ema_decay: float
    grad_clip: float
    random_flip: bool
    train_seed: int
    trainer: str  # "standard" (shuffled fixed batches, global clipping) or "dp-sgd" (opacus: Poisson batches, per-example clipping, noise)
    checkpoint_every: int  # does not change the trained weights; excluded from the hash
    snapshot_every: int  # keep the EMA weights every this many iterations (0 = never); not hashed
    dp_epsilon: float  # DP-SGD target epsilon; inf = no noise
    dp_delta: float  # DP-SGD delta
    dp_max_grad_norm: float  # DP-SGD per-example clipping norm; inf = no clipping
    dp_multiplicity: int  # (t, noise) draws averaged inside each example's loss before clipping (DPDM's K)
    dp_physical_batch: int  # most examples per forward pass (a Poisson batch is split into physical batches)

    @property
    def dp_sgd(self) -> bool:
        """Trained by the DP-SGD loop (which, with epsilon and the clipping norm both inf, is the
        non-private baseline of the same code)."""
        return self.trainer == "dp-sgd"

    @property
    def private(self) -> bool:
        """Differentially private: the DP-SGD loop with noise (finite epsilon)."""
        return self.dp_sgd and math.isfinite(self.dp_epsilon)


@dataclass(frozen=True)
class AttackConfig:
    """How the attacks query the target."""

    attack_steps: int  # number of diffusion steps the loss attack evaluates
    n_noise: int  # noise draws per (image, step), losses averaged
    attack_seed: int
    attack_batch: int
    n_references: int  # reference models per family for the reference-model attack (0 = not run; each is a full training)


@dataclass(frozen=True)
class SampleConfig:
    """How many images to generate from a target for inspection, and with how many steps."""

    n_samples: int
    sample_steps: int


@dataclass(frozen=True)
class LikelihoodConfig:
    """How the likelihood attack solves the probability-flow ODE, and on how many images."""

    lik_rtol: float
    lik_atol: float
    lik_method: str  # a torchdiffeq method, e.g. dopri5
    lik_probes: int  # Hutchinson probes per image
    lik_max_images: int  # at most this many members and this many nonmembers (seeded random subsets)
    lik_batch: int


@dataclass(frozen=True)
class SpeedConfig:
    """How big the side-by-side speed comparisons in the book are (they change no result)."""

    speed_images: int  # images the paper-style loop and miakit both solve
    speed_batch: int  # images in miakit's throughput batch (0 = skip)
    dp_speed_rounds: int  # interleaved rounds timing DP-SGD against ordinary steps (P3)


@dataclass(frozen=True)
class FactorConfig:
    """The factor studies of chapter 04 (lists are comma-separated strings, as papermill passes them)."""

    size_n_members: str  # member-set sizes compared, each at equal epochs and at equal iterations with the target
    factor_attack_steps: int  # steps on the grid the size and length studies attack
    factor_n_noise: int  # noise draws per step in the size and length studies
    aggregation_n_noise: str  # noise draws per step compared in the aggregation study
    step_window: int  # attack-grid steps averaged around the most vulnerable one
    lik_tolerances: str  # ODE tolerances compared (rtol = atol)
    lik_probe_counts: str  # Hutchinson probes per image compared
    factor_lik_max_images: int  # at most this many members and nonmembers in the likelihood-settings study

    def sizes(self) -> list[int]:
        return parse_list(self.size_n_members, int)

    def draws(self) -> list[int]:
        return parse_list(self.aggregation_n_noise, int)

    def tolerances(self) -> list[float]:
        return parse_list(self.lik_tolerances, float)

    def probe_counts(self) -> list[int]:
        return parse_list(self.lik_probe_counts, int)


@dataclass(frozen=True)
class PrivacyStudyConfig:
    """The privacy-utility trade-off of chapter 05: DP targets and how they are scored."""

    dp_epsilons: str  # comma-separated finite privacy budgets (the non-private and clipping-only arms always run)
    dp_families: str  # comma-separated families trained privately
    dp_n_members: int  # member-set size of the trade-off's targets
    dp_iterations: int  # optimizer steps of every target
    dp_batch_size: int  # expected (Poisson) batch size
    dp_lik_max_images: int  # at most this many members and nonmembers for the likelihood attack on DP targets
    # comma-separated registered attacks run on every DP target (C5 covers each); "default": the
    # attacks registered with "dp" in their ``default_in`` (``miakit.attacks.defaults("dp")``)
    dp_attacks: str
    utility_samples: int  # generated images per target for the Frechet distance
    utility_steps: int  # sampler steps for those images
    inception_fid: bool  # also Inception FID (torchmetrics; skipped with a message when unavailable)

    def epsilons(self) -> list[float]:
        return parse_list(self.dp_epsilons, float)

    def families(self) -> list[str]:
        return [name.strip() for name in self.dp_families.split(",") if name.strip()]

    def attacks(self) -> list[str]:
        if self.dp_attacks.strip() == "default":
            from miakit import attacks  # the registry (imported here: it needs torch, the settings do not)
            return attacks.defaults("dp")
        return [name.strip() for name in self.dp_attacks.split(",") if name.strip()]


def parse_list(text: str, kind: type) -> list:
    """``"1,4,16"`` -> [1, 4, 16]; a clear error for anything else."""
    try:
        values = [kind(part) for part in str(text).split(",") if part.strip()]
    except ValueError as err:
        raise ValueError(f"{text!r} is not a comma-separated list of {kind.__name__} values") from err
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{text!r} must list at least one positive {kind.__name__}")
    return values


@dataclass(frozen=True)
class BenchmarkConfig:
    """Chapter 06's benchmark regime: targets where attacks separate (``miakit.chapters.benchmark``). Its
    targets share the profile's recipe (model, batch, learning rate, EMA) but train on their own
    dataset and split: many members, a large test part so that TPR at 1% and 0.1% FPR have
    intervals, and a training length short enough that no attack saturates."""

    bench_dataset: str  # the regime's images (a dataset name as ``dataset`` takes)
    bench_n_members: int  # members of each benchmark target (0 = no benchmark regime)
    bench_n_nonmembers: int  # nonmembers (validation and test parts together)
    bench_val_fraction: float  # share of members and nonmembers that choose each attack's setting
    bench_iterations: int  # training iterations of each benchmark target
    bench_lr: float  # their learning rate (the rest of the recipe is the profile's)


@dataclass(frozen=True)
class ComparisonConfig:
    """How comparisons between separately trained targets are made."""

    n_seeds: int  # training seeds per arm (C3's sizes, C5's arms); intervals cover their spread


@dataclass(frozen=True)
class Settings:
    profile: str
    data: DataConfig
    target: TargetConfig
    attack: AttackConfig
    sampling: SampleConfig
    likelihood: LikelihoodConfig
    speed: SpeedConfig
    factors: FactorConfig
    privacy_study: PrivacyStudyConfig
    benchmark: BenchmarkConfig
    comparison: ComparisonConfig
    device: str  # "auto", "cpu" or "cuda"
    runs_dir: str
    families: str  # comma-separated families the chapters train and attack side by side; "all": every registered one

    def family_names(self) -> list[str]:
        if self.families.strip() == "all":
            from miakit.diffusion import FAMILIES  # the registry (imported here: it needs torch, the settings do not)
            return list(FAMILIES)
        return [name.strip() for name in self.families.split(",") if name.strip()]

    def for_family(self, name: str) -> "Settings":
        """The same settings with the target trained as ``name``."""
        return dataclasses.replace(self, target=dataclasses.replace(self.target, family=name))

    def target_hash(self) -> str:
        """Stable hash of the settings that determine the trained weights (the run key,
        ``miakit.training.train.run_key``, adds the family, the resolved UNet and the member images)."""
        unhashed = UNHASHED if self.target.dp_sgd else UNHASHED + DP_KEYS  # standard loop: DP settings are moot
        payload = {"format": RUN_FORMAT,
            "data": dataclasses.asdict(self.data),
            "target": {k: v for k, v in dataclasses.asdict(self.target).items() if k not in unhashed},
        }
        return stable_hash(payload)

    def flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"profile": self.profile, **{k: getattr(self, k) for k in RUN_KEYS}}
        for section in (self.data, self.target, self.attack, self.sampling, self.likelihood, self.speed,
                        self.factors, self.privacy_study, self.benchmark, self.comparison):
            out.update(dataclasses.asdict(section))
        return out


SECTIONS: dict[str, type] = {"data": DataConfig, "target": TargetConfig, "attack": AttackConfig,
                             "sampling": SampleConfig, "likelihood": LikelihoodConfig, "speed": SpeedConfig,
            "factors": FactorConfig, "privacy_study": PrivacyStudyConfig, "benchmark": BenchmarkConfig,
            "comparison": ComparisonConfig}
RUN_KEYS = ("device", "runs_dir", "families")
TRAINERS = ("standard", "dp-sgd")
# version of what a run folder holds and how it was trained: 2 = bias-corrected EMA; 3 = one training
# loop (DP-SGD draws its own Poisson batches and runs exactly `iterations` steps), checksummed files
RUN_FORMAT = 3
UNHASHED = ("checkpoint_every", "snapshot_every")  # what a run saves along the way, not its weights
DP_KEYS = ("dp_epsilon", "dp_delta", "dp_max_grad_norm", "dp_multiplicity", "dp_physical_batch")
PARAMETERS: tuple[str, ...] = tuple(
    [f.name for cls in SECTIONS.values() for f in fields(cls)] + list(RUN_KEYS)
)

_COMMON = dict(split_seed=0, val_fraction=0.5, family="ddpm", train_seed=0, attack_seed=0,
               grad_clip=1.0, trainer="standard", device="auto", runs_dir="runs", families="all",
               dp_attacks="default", lik_method="dopri5", lik_probes=1,
               dp_epsilon=math.inf, dp_delta=1e-5, dp_max_grad_norm=1.0)

PROFILES: dict[str, dict[str, Any]] = {
    # seconds: exercises every code path on a few tiny images
    "smoke": dict(_COMMON, dataset="digits", resolution=8, n_members=16, n_nonmembers=48,
                  model="tiny", iterations=30, batch_size=16, lr=1e-3, warmup=0, ema_decay=0.9,
                  random_flip=False, checkpoint_every=10, snapshot_every=10, dp_multiplicity=2, dp_physical_batch=16,
                  attack_steps=6, n_noise=1, attack_batch=256, n_references=1, n_samples=8, sample_steps=20,
                  lik_rtol=1e-2, lik_atol=1e-2, lik_max_images=8, lik_batch=16,
                  speed_images=1, speed_batch=4, dp_speed_rounds=1,
                  size_n_members="8,16", factor_attack_steps=4, factor_n_noise=1, aggregation_n_noise="1,2", step_window=3,
                  lik_tolerances="1e-1,1e-2", lik_probe_counts="1,2", factor_lik_max_images=4,
                  dp_epsilons="10", dp_families="ddpm", dp_n_members=16, dp_iterations=12, dp_batch_size=8,
                  dp_lik_max_images=4, utility_samples=16, utility_steps=10,
                  inception_fid=False, n_seeds=2,
                  bench_dataset="digits", bench_n_members=24, bench_n_nonmembers=96, bench_val_fraction=0.25,
                  bench_iterations=20, bench_lr=1e-3),
    # minutes on a 2-core laptop: a small member set and a 1.1M-parameter UNet, tuned for a clear
    # membership signal per CPU-minute; more nonmembers than members sharpen low-FPR resolution
    # the digits at their native 8x8 pixels and the 0.16M-parameter UNet: measured side by side
    # (benchmarks/cpu_profile.py), 16x16 upsampling cost ~5x the training time of 8x8 for the same
    # membership signal and the 1.1M UNet ~2.4x the tiny one's; the time saved buys the 3 training
    # seeds per arm that comparisons between separately trained targets need
    "cpu": dict(_COMMON, dataset="digits", resolution=8, n_members=100, n_nonmembers=1000,
                model="tiny", iterations=1200, batch_size=64, lr=1e-3, warmup=100, ema_decay=0.995,
                random_flip=False, checkpoint_every=250, snapshot_every=200, dp_multiplicity=1,
                dp_physical_batch=64,
                attack_steps=41, n_noise=4, attack_batch=164,  # one image's 41 x 4 per pass
                n_references=2,  # 8 more trainings of ~70 s each
                n_samples=16, sample_steps=1000,
                # every member and nonmember: 0.03 s per image at 8x8
                lik_rtol=1e-3, lik_atol=1e-3, lik_max_images=1000, lik_batch=128,
                speed_images=2, speed_batch=32, dp_speed_rounds=10,
                # sizes around the 100-member target (AUC ~0.97 after its 1200 iterations), each at
                # equal epochs and at equal iterations with it
                size_n_members="50,100,200", factor_attack_steps=11, factor_n_noise=2, aggregation_n_noise="1,4,16",
                step_window=5, lik_tolerances="1e-2,1e-3,1e-4", lik_probe_counts="1,2,4",
                factor_lik_max_images=100,
                # 100 members at expected batch 50 for 400 steps: the matched non-private arm leaks
                # (AUC ~0.7) and makes digits; epsilon from 1e4 (a few recognisable digits) to 1
                dp_epsilons="10000,100,1", dp_families="ddpm", dp_n_members=100, dp_iterations=400,
                dp_batch_size=50, dp_lik_max_images=300, utility_samples=500,
                utility_steps=100,
                inception_fid=False, n_seeds=3,
                # chosen on validation AUC only (benchmarks/bench_recipe.py): 1000 members needed ~10k
                # iterations (~40 min a family here) to reach the band, so the cpu regime has 250;
                # 5600 test nonmembers resolve TPR at 0.1% FPR; the gpu and paper profiles have 1000
                bench_dataset="fashion-mnist", bench_n_members=250, bench_n_nonmembers=8000, bench_val_fraction=0.3,
                bench_iterations=3000, bench_lr=2e-3),
    # one Colab GPU (a T4): CIFAR-10 32x32, the data of SecMI, PIA and SimA, fetched through
    # Hugging Face datasets; 1000 members as in the paper, a 6M-parameter UNet, sized for one Colab
    # session per chapter by FLOP estimates; the step measured on an H200 is overhead-bound and
    # slower than they assume: book/reproduce.md gives both, the H200's hours a lower bound for a T4
    "gpu": dict(_COMMON, dataset="cifar10", resolution=32, n_members=1000, n_nonmembers=5000,
                model="medium", iterations=40_000, batch_size=64, lr=2e-4, warmup=1000, ema_decay=0.999,
                random_flip=True, checkpoint_every=2000, snapshot_every=10_000, dp_multiplicity=1,
                dp_physical_batch=128,
                attack_steps=101, n_noise=2, attack_batch=1024,
                n_references=1,  # one more training per family
                n_samples=64, sample_steps=1000,
                lik_rtol=1e-4, lik_atol=1e-4, lik_max_images=500, lik_batch=128,
                speed_images=4, speed_batch=128, dp_speed_rounds=10,
                size_n_members="500,1000,2000", factor_attack_steps=21, factor_n_noise=2, aggregation_n_noise="1,4,16",
                step_window=5, lik_tolerances="1e-3,1e-4,1e-5", lik_probe_counts="1,4,16",
                factor_lik_max_images=200,
                dp_epsilons="50,10,1", dp_families="ddpm", dp_n_members=1000, dp_iterations=5000,
                dp_batch_size=128, dp_lik_max_images=200, utility_samples=2000,
                utility_steps=100, inception_fid=False, n_seeds=2,
                # the attack papers' data at the paper's member count; the length is not yet measured on a GPU
                bench_dataset="cifar10", bench_n_members=1000, bench_n_nonmembers=11000, bench_val_fraction=0.1,
                bench_iterations=20_000, bench_lr=2e-4),
    # the paper's FFHQ 64x64 setting (score_sde DDPM config), for one GPU
    "paper": dict(_COMMON, dataset="folder:data/ffhq64", resolution=64, n_members=1000,
                  n_nonmembers=1000, model="paper", iterations=500_000, batch_size=32, lr=2e-5,
                  warmup=5000, ema_decay=0.9999, random_flip=True, checkpoint_every=5000, snapshot_every=50_000, dp_multiplicity=4,
                  dp_physical_batch=32,
                  attack_steps=1000, n_noise=1, attack_batch=1000,
                  n_references=1,  # one more full training per family
                  n_samples=64, sample_steps=1000,
                  lik_rtol=1e-5, lik_atol=1e-5, lik_max_images=1000, lik_batch=64,
                  speed_images=4, speed_batch=64, dp_speed_rounds=10,
                  # narrowed from 1000,2000,5000: at equal epochs 5000 members train 2.5M iterations,
                  # about 140 A100-hours per seed (estimated by miakit.chapters.budget); with 500,1000,2000
                  # the chapter is estimated at about 70 A100-hours
                  size_n_members="500,1000,2000", factor_attack_steps=101, factor_n_noise=1, aggregation_n_noise="1,4,16",
                  step_window=5, lik_tolerances="1e-3,1e-4,1e-5", lik_probe_counts="1,4,16",
                  factor_lik_max_images=200,
                  # narrowed to DDPM and 20k iterations (5120 epochs of 1000 members at batch 256): four
                  # families at 100k iterations would be ~1000 A100-hours of DP-SGD (miakit.chapters.budget)
                  dp_epsilons="50,10,1", dp_families="ddpm", dp_n_members=1000,
                  dp_iterations=20_000, dp_batch_size=256, dp_lik_max_images=200,
                  utility_samples=5000,
                  utility_steps=1000, inception_fid=True, n_seeds=3,
                  # the attack papers' CIFAR-10 at the paper's member count and model; length not measured
                  bench_dataset="cifar10", bench_n_members=1000, bench_n_nonmembers=11000, bench_val_fraction=0.1,
                  bench_iterations=100_000, bench_lr=2e-5),
}


def stable_hash(payload: Mapping[str, Any], length: int = 12) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# knobs renamed to one rule, the scope's prefix and the base name (n_members, n_noise,
# lik_max_images); an old name is refused with its new one rather than silently ignored
RENAMED = {"size_members": "size_n_members", "dp_members": "dp_n_members", "factor_noise": "factor_n_noise",
           "noise_draws": "aggregation_n_noise", "factor_lik_images": "factor_lik_max_images",
           "dp_lik_images": "dp_lik_max_images", "bench_members": "bench_n_members",
           "bench_nonmembers": "bench_n_nonmembers", "factor_steps": "factor_attack_steps"}


def resolve(profile: str = "cpu", **overrides: Any) -> Settings:
    """Settings of ``profile`` with every non-None override applied.

    Raises ValueError for an unknown profile or parameter name, naming the valid ones.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    renamed = {old: RENAMED[old] for old in overrides if old in RENAMED}
    if renamed:
        raise ValueError("renamed parameter(s): " + ", ".join(f"{old} is now {new}" for old, new in renamed.items()))
    unknown = sorted(set(overrides) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; valid parameters: profile, {', '.join(PARAMETERS)}")
    values = dict(PROFILES[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    sections = {}
    for name, cls in SECTIONS.items():
        kwargs = {}
        for f in fields(cls):
            kwargs[f.name] = _coerce(f.name, values[f.name], PROFILES[profile][f.name])
        sections[name] = cls(**kwargs)
    settings = Settings(profile=profile, device=values["device"], runs_dir=str(values["runs_dir"]),
                        families=str(values["families"]), **sections)
    _validate(settings)
    return settings


PARAMETER_NAMES = "_miakit_parameter_names"  # where the first call records a notebook's parameter names


def from_namespace(namespace: Mapping[str, Any]) -> Settings:
    """Settings from a notebook's globals: on the first call, every public, non-module,
    non-callable name is a parameter.

    Papermill injects parameters as plain assignments, so a misspelt parameter shows up here as
    an unknown name and is rejected instead of being silently ignored. The first call records
    the parameter names in the namespace (``PARAMETER_NAMES``); a later call in the same kernel
    reads only those and the known knobs, so re-running the setup cell, or the whole notebook,
    after later cells defined more names (results, studies) works and picks up changed values.
    """
    ignored = {"In", "Out", "get_ipython", "exit", "quit", "open"}
    candidates = {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and k not in ignored and not isinstance(v, types.ModuleType)
        and not callable(v)
    }
    recorded = namespace.get(PARAMETER_NAMES)
    if recorded is None:
        params = candidates
        if isinstance(namespace, MutableMapping):
            namespace[PARAMETER_NAMES] = frozenset(params)
    else:
        params = {k: v for k, v in candidates.items() if k in recorded or k in PARAMETERS or k == "profile"}
    params = dict(params)
    profile = params.pop("profile", "cpu")
    return resolve(profile, **params)


INFINITE_OK = ("dp_epsilon", "dp_max_grad_norm")  # inf means "no noise" / "no clipping"
DATASET_FORMS = ("'digits', 'fashion-mnist', 'fashion-mnist:<folder>', 'folder:<path>', "
                 "'folder-skip-unreadable:<path>' (unreadable files left out), 'cifar10' or "
                 "'hf:<hub id or local folder>[@<split>]'")


def _coerce(name: str, value: Any, reference: Any) -> Any:
    """Cast a papermill/CLI value (JSON, or a string) to the type of the profile's value, strictly:
    no bool where a number is meant, no fraction where a count is meant, no NaN, and no infinity
    except where it means something (``INFINITE_OK``)."""
    def bad(kind: str) -> ValueError:
        return ValueError(f"parameter {name}={value!r} is not {kind}")

    if isinstance(reference, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "false", "no"):
            return value.lower() in ("true", "yes")
        raise bad("a boolean (true or false)")
    if isinstance(value, bool) and not isinstance(reference, str):
        raise bad(("a whole number" if isinstance(reference, int) else "a number") + " (a boolean was given)")
    if isinstance(reference, int):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad("a whole number")
    if isinstance(reference, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise bad("a number") from None
        else:
            raise bad("a number")
        if math.isnan(number) or (math.isinf(number) and name not in INFINITE_OK):
            raise bad("a finite number" + (" (inf is allowed only for " + ", ".join(INFINITE_OK) + ")"
                                          if math.isinf(number) else ""))
        return number
    if isinstance(reference, str):
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # a one-element list such as size_n_members=50
            return str(value)
        raise bad("a string")
    raise bad(type(reference).__name__)


def _check_names(s: "Settings") -> None:
    """Names that select code or files: known presets, families, solvers, a dataset of a known
    form, a resolution the preset's UNet accepts."""
    from torchdiffeq._impl.odeint import SOLVERS

    from miakit.diffusion import FAMILIES
    from miakit.diffusion.unet import PRESETS, check_resolution

    t = s.target
    if t.model not in PRESETS:
        raise ValueError(f"model={t.model!r} is not a UNet preset; choose one of {sorted(PRESETS)}")
    check_resolution(t.model, s.data.resolution)
    for label, names in (("family", [t.family]), ("families", s.family_names()),
                         ("dp_families", s.privacy_study.families())):
        unknown = [n for n in names if n not in FAMILIES]
        if unknown:
            raise ValueError(f"{label}: unknown diffusion famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                             f"choose from {sorted(FAMILIES)}")
    if s.likelihood.lik_method not in SOLVERS or s.likelihood.lik_method == "scipy_solver":
        raise ValueError(f"lik_method={s.likelihood.lik_method!r} is not a torchdiffeq method; choose one of "
                         f"{sorted(set(SOLVERS) - {'scipy_solver'})}")
    for name, d in (("dataset", s.data.dataset), ("bench_dataset", s.benchmark.bench_dataset)):
        kind, sep, where = d.partition(":")
        if not (d in ("digits", "fashion-mnist", "cifar10")
                or (sep and kind in ("fashion-mnist", "folder", "folder-skip-unreadable", "hf")
                    and where.strip().partition("@")[0].strip())):
            raise ValueError(f"{name}={d!r} is not {DATASET_FORMS}")


def _device_check(device: str) -> tuple[bool, str]:
    """Whether a ``cuda`` device asked for exists here (checked before anything runs)."""
    if not device.startswith("cuda"):
        return True, ""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0) if device.partition(":")[2].isdigit() or device == "cuda" else -1
    return (0 <= index < count, f"device={device!r} but this machine has {count} CUDA device(s): use device=auto "
            "(CUDA when there is one, else the CPU) or device=cpu")


def _validate(s: Settings) -> None:
    d, t, a = s.data, s.target, s.attack
    checks = [
        (d.resolution >= 4, "resolution must be at least 4"),
        (d.n_members >= 2 and d.n_nonmembers >= 2, "need at least 2 members and 2 nonmembers"),
        (0.0 < d.val_fraction < 1.0, "val_fraction must lie strictly between 0 and 1"),
        (t.iterations >= 0 and t.batch_size >= 1, "iterations must be at least 0 (0 = the untrained network, a "
         "chance-level baseline) and batch_size positive"),
        (0.0 <= t.ema_decay < 1.0, "ema_decay must lie in [0, 1)"),
        (0 < t.lr <= 1, f"lr={t.lr:g} is outside (0, 1]: Adam's step size (the profiles use 2e-5 to 2e-3; a "
         "larger one overflows the weights)"),
        (t.checkpoint_every >= 1, "checkpoint_every must be positive"),
        (t.snapshot_every >= 0, "snapshot_every must be 0 (never) or positive"),
        (t.dp_epsilon > 0 and 0 < t.dp_delta < 1 and t.dp_max_grad_norm > 0 and t.dp_multiplicity >= 1
         and t.dp_physical_batch >= 1, "dp_epsilon > 0 (inf = not private), 0 < dp_delta < 1, dp_max_grad_norm > 0, "
         "dp_multiplicity and dp_physical_batch >= 1"),
        (s.sampling.n_samples >= 1 and s.sampling.sample_steps >= 1, "n_samples and sample_steps must be positive"),
        (a.attack_steps >= 1 and a.n_noise >= 1 and a.attack_batch >= 1,
         "attack_steps, n_noise and attack_batch must be positive"),
        (a.n_references >= 0, "n_references must be 0 (no reference-model attack) or positive"),
        (s.likelihood.lik_rtol > 0 and s.likelihood.lik_atol > 0 and s.likelihood.lik_probes >= 1
         and s.likelihood.lik_max_images >= 1 and s.likelihood.lik_batch >= 1,
         "likelihood tolerances, probes, image cap and batch must be positive"),
        (s.speed.speed_images >= 1 and s.speed.speed_batch >= 0 and s.speed.dp_speed_rounds >= 1,
         "speed_images and dp_speed_rounds must be positive and speed_batch at least 0"),
        (bool(s.family_names()), "families must name at least one family"),
        (t.trainer in TRAINERS, f"trainer must be one of {TRAINERS}"),
        (t.dp_sgd or math.isinf(t.dp_epsilon), f"dp_epsilon={t.dp_epsilon:g} needs trainer='dp-sgd' (the standard "
         "trainer adds no noise)"),
        (not (t.dp_sgd and math.isfinite(t.dp_epsilon) and math.isinf(t.dp_max_grad_norm)),
         "DP-SGD with a finite dp_epsilon needs a finite dp_max_grad_norm (noise is calibrated to the clipping)"),
        (s.comparison.n_seeds >= 1, "n_seeds must be at least 1"),
        (s.factors.factor_attack_steps >= 2 and s.factors.factor_n_noise >= 1 and s.factors.step_window >= 1
         and s.factors.factor_lik_max_images >= 2, "factor_attack_steps >= 2, factor_n_noise, step_window >= 1, "
         "factor_lik_max_images >= 2"),
        (s.device in ("auto", "cpu", "cuda") or s.device.startswith("cuda:"),
         "device must be auto, cpu or cuda"),
        (s.benchmark.bench_n_members >= 0, "bench_n_members must be 0 (no benchmark regime) or positive"),
        (s.benchmark.bench_n_members == 0 or (s.benchmark.bench_n_members >= 2 and s.benchmark.bench_n_nonmembers >= 2
                                            and 0.0 < s.benchmark.bench_val_fraction < 1.0
                                            and s.benchmark.bench_iterations >= 0
                                            and 0.0 < s.benchmark.bench_lr < 1.0),
         "the benchmark regime needs bench_n_members >= 2, bench_n_nonmembers >= 2, bench_val_fraction strictly between "
         "0 and 1, bench_iterations >= 0 and 0 < bench_lr < 1"),
    ]
    checks.append(_device_check(s.device))
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    _check_names(s)
    colab.check(s.runs_dir)  # a Drive run store: only on Colab, and inside Drive
    s.factors.sizes(), s.factors.draws(), s.factors.tolerances(), s.factors.probe_counts()  # parse or raise
    p = s.privacy_study
    if any(not (0 < eps < math.inf) for eps in p.epsilons()) or not p.families():
        raise ValueError("dp_epsilons must list finite positive budgets (the non-private and clipping-only arms are "
                         "always trained) and dp_families must be non-empty")
    from miakit import attacks  # the registry (imported here: it needs torch, the settings do not)
    named = p.attacks()
    if not named or len(set(named)) != len(named) or any(name not in attacks.REGISTRY for name in named):
        raise ValueError(f"dp_attacks={p.dp_attacks!r} must name distinct registered attacks, from "
                         f"{sorted(attacks.REGISTRY)}")
    if min(p.dp_n_members, p.dp_iterations, p.dp_batch_size, p.dp_lik_max_images, p.utility_samples, p.utility_steps) < 1:
        raise ValueError("dp_n_members, dp_iterations, dp_batch_size, dp_lik_max_images, utility_samples and "
                         "utility_steps must be positive")
