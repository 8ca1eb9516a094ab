"""The run config's sections (data, model, runtime, gating, evaluate) and the run itself, as typed models:
ranges on the fields, cross-field checks in each model's validator (argse.config.schema)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from argse.config.schema import Section, seed_field
from argse.core import distributed
from argse.core.errors import ArgseError

MAX_NAME_BYTES = 100  # a run's folders add a seed, a cost and a stage id to its name; 255 bytes is the usual limit
BUILTIN_EXPERTS = ["ce", "logit_adjust", "balanced_softmax", "decoupling", "posthoc_adjust"]


class DataConfig(Section):
    more_keys: ClassVar[str] = ", and sections named after a dataset"

    dataset: str = "synthetic_lt"
    """A registered dataset (argse.data.datasets: synthetic_lt, cifar10_lt, cifar100_lt, imagefolder_lt, list_lt, or
    a plugin's); its own options are the section of the same name, e.g. ``synthetic_lt: {classes: 10}``."""
    root: str = "data"
    """Where the dataset's files are: the torchvision files, the image tree / .tar.gz for imagefolder_lt, the
    image root for list_lt (synthetic_lt reads nothing)."""
    imbalance_factor: float = Field(100.0, ge=1)
    """n_max / n_min of the training set (the long-tailed profile of Cao et al. 2019)."""
    val_fraction: float = Field(0.2, gt=0)
    """Held-out splits: fractions of the official test set per class."""
    tune_fraction: float = Field(0.3, gt=0)
    test_fraction: float = Field(0.5, gt=0)
    tail_max_count: int = Field(20, ge=1)
    """Classes with at most this many training images form the tail group (every class keeps at least one)."""
    many_min_count: int = Field(100, ge=0)
    """Many-shot: more than this many training images."""
    few_max_count: int = Field(20, ge=0)
    """Few-shot: fewer than this many training images."""
    sections: dict[str, Any] = {}
    """One section per dataset, named after it (``data.list_lt.train_list``), written beside the keys above: its
    options model reads it (argse.data.datasets checks every section when the data is loaded)."""

    @model_validator(mode="before")
    @classmethod
    def _collect_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        mine = set(cls.model_fields)
        found = {k: v for k, v in data.items() if k not in mine and isinstance(v, dict | None)}
        rest = {k: v for k, v in data.items() if k not in found}
        return {**rest, "sections": {**(rest.get("sections") or {}), **found}} if found else data

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        fracs = (self.val_fraction, self.tune_fraction, self.test_fraction)
        if sum(fracs) > 1 + 1e-9:
            raise ValueError(f"val/tune/test fractions must sum to at most 1, got {fracs}")
        if self.few_max_count > self.many_min_count:
            raise ValueError(
                f"few_max_count must lie in [0, many_min_count={self.many_min_count}], got {self.few_max_count}"
            )
        return self  # an empty group is found once the class counts are known (argse.data.splits.check_counts)


class ModelConfig(Section):
    arch: Literal["resnet_cifar", "resnet50", "resnext50_32x4d"] = "resnet_cifar"
    """resnet_cifar: CIFAR ResNet of He et al. 2016 (option-A shortcuts); the others come from torchvision."""
    depth: int = Field(32, ge=8)
    """resnet_cifar: 6n+2: 20, 32, 44, 56, 110."""
    width: int = Field(16, ge=1)
    """resnet_cifar: channels of the first stage (16 in the paper)."""
    zero_init_residual: bool = True
    """resnet50 / resnext50_32x4d: start each residual branch at zero (Goyal et al. 2017), so the
    untrained network is stable; false gives torchvision's plain initialisation."""

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.arch == "resnet_cifar" and (self.depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, ...), got {self.depth}")
        return self


class RuntimeConfig(Section):
    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        try:
            distributed.check_device(device, "device")
        except ArgseError as exc:
            raise ValueError(str(exc)) from None
        return device

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, on: bool) -> bool:
        """Checked when the config is read, before anything is written (the writer opens after data and model)."""
        if on and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "tensorboard is on but the tensorboard package is not installed; pip install "
                "'argse[tensorboard]' (or tensorboard), or set runtime.tensorboard=false"
            )
        return on

    device: str = "auto"
    """'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ..."""
    channels_last: bool = True
    """NHWC memory format for convolutions (faster on CPU and GPU, see docs/performance.md)."""
    bf16: bool = True
    """bf16 autocast on CUDA and on CPUs with bf16 instructions (AVX512-BF16, AMX); fp32 on other CPUs."""
    compile: bool = False
    """torch.compile the model (CUDA)."""
    cuda_graphs: bool = False
    """Capture each training step in a CUDA graph (static shapes, LR and crops on the device; CUDA
    only, refused on the CPU and under torchrun). Off by default: not yet measured on a GPU
    (docs/performance_notes.md)."""
    threads: int = Field(0, ge=0)
    """torch intra-op threads; 0: as many as there are free cores when the command starts (argse.training.device:
    torch's one per core stalls on cores other work shares)."""
    eval_batch_size: int = Field(1000, ge=1)
    progress: bool = True
    """Show rich progress bars (rank 0 only under torchrun)."""
    log_lines: Literal["auto", "always", "never"] = "auto"
    """One plain line per training epoch (epoch, loss, val balanced accuracy, lr, seconds, ETA): 'auto'
    when stdout is not a terminal (nohup, a batch job, CI), where no progress bar is drawn."""
    tensorboard: bool = False
    """Also write each epoch's metrics as TensorBoard events beside metrics.jsonl (pip install argse[tensorboard])."""
    workers: int = Field(8, ge=0)
    """DataLoader worker processes that decode JPEGs (list_lt; the in-memory datasets need none; 0: the main process)."""
    sync_bn: bool = True
    """Under torchrun, BatchNorm statistics span all ranks, so N processes train like one."""
    dist_timeout_s: int = Field(1800, ge=1)
    """Under torchrun, how long a collective waits for the other ranks before failing."""


class GatingConfig(Section):
    gate: Literal["learned", "uniform", "fixed"] = "learned"
    fixed_weights: list[float] = []
    """Weights per expert (in --experts order) when gate=fixed."""
    features: Literal["rich", "rich+posteriors"] = "rich"
    objective: Literal["nll", "balanced_nll", "selective_balanced", "selective_worst"] = "balanced_nll"
    """nll / balanced_nll: the mixture's (class-balanced) NLL. selective_balanced / selective_worst: after a
    balanced-NLL warm-up, the gate is trained jointly with a plug-in rule (group weights and threshold per
    target rejection rate) on a smooth surrogate of the balanced / worst-group selective error (docs/gating.md,
    "Selective objectives")."""
    hidden: list[int] = Field([64, 64], min_length=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(100, ge=0)
    batch_size: int = Field(0, ge=0)
    """0 = full batch."""
    patience: int = Field(20, ge=1)
    """Early stopping on val NLL."""
    top_k: int = Field(5, ge=1)
    seed: int = seed_field()
    tune_fraction: float = Field(0.5, gt=0, lt=1)
    """Share of ``tune`` (per class, seeded by the run seed) that trains the gate; the rest fits every
    source's rejectors in ``evaluate``, so no rejector is fitted on the samples that trained the gate."""
    selective_rates: list[float] = Field([0.2, 0.4, 0.6], min_length=1)
    """Selective objectives: the target rejection rates the gate is trained for; each gets its own rule."""
    selective_temperature: float = Field(0.05, gt=0)
    """Smoothness of the surrogate: acceptance sigmoid((score - t) / T) and a softmax(alpha p / T) prediction."""
    selective_coverage_weight: float = Field(10.0, ge=0)
    """Weight of the squared gap between the soft rejection rate and its target."""
    selective_warmup_epochs: int = Field(100, ge=0)
    """Epochs (at most; early-stopped on val NLL) of balanced-NLL training before the selective objective
    takes over. The default is the NLL gate's own schedule, so the selective gate starts from it."""
    selective_rule_lr: float = Field(0.02, gt=0)
    """Adam step for the rule's parameters (log alpha, mu, t); the gate keeps ``lr``."""
    selective_eg_step: float = Field(1.0, gt=0)
    """selective_worst: exponentiated-gradient step of the group weights, once per epoch."""

    @model_validator(mode="after")
    def _check(self) -> GatingConfig:
        if self.epochs < 1 and self.gate == "learned":
            raise ValueError(
                f"epochs must be >= 1 for gate 'learned' (got {self.epochs}); use gate: uniform or fixed for an "
                f"untrained gate"
            )
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not all(0 < r < 1 for r in self.selective_rates):
            raise ValueError(f"selective_rates must lie in (0, 1), got {self.selective_rates}")
        usable = bool(self.fixed_weights) and min(self.fixed_weights) >= 0 and sum(self.fixed_weights) > 0
        if self.gate == "fixed" and not usable:
            raise ValueError(
                f"fixed_weights must hold one non-negative weight per expert, not all zero, for gate 'fixed' "
                f"(got {self.fixed_weights}); set gating.fixed_weights=[w1, w2, ...] in --experts order"
            )
        return self


# The rule a selective gate learned with itself (gating.objective: selective_*); evaluate adds it for the
# gating source only, so it is not a rejector a config may name.
GATE_RULE = "gate_rule"


def named_twice(names: list[str]) -> str | None:
    """The first name that ``names`` holds more than once, or None."""
    return next((n for n in sorted(names) if names.count(n) > 1), None)


class GuaranteeConfig(Section):
    """A risk the evaluation guarantees (argse.selective.guarantee): at most ``risk`` with probability at least
    1 - ``delta`` over the fitting sample."""

    risk_of: Literal["balanced", "worst", "groups"] = "worst"
    """balanced: the balanced error; worst: the worst-group error; groups: each group's error, one risk each."""
    risk: list[float] = Field([0.25], min_length=1)
    """One risk (balanced, worst) or one per group (groups); a number is a list of one."""
    delta: float = Field(0.05, gt=0, lt=1)

    @field_validator("risk", mode="before")
    @classmethod
    def _one(cls, risk: Any) -> Any:
        return [risk] if isinstance(risk, int | float) else risk

    @model_validator(mode="after")
    def _check(self) -> GuaranteeConfig:
        bad = [r for r in self.risk if not 0 < r < 1]
        if bad:
            raise ValueError(f"a guaranteed risk must lie in (0, 1), got {bad[0]}")
        if self.risk_of != "groups" and len(self.risk) != 1:
            raise ValueError(
                f"risk_of {self.risk_of} takes one risk, got {len(self.risk)}; give one per group with risk_of groups"
            )
        return self


class EvaluateConfig(Section):
    sources: list[str] = []
    """Experts and/or 'gating'; empty = every source with exported logits."""
    methods: list[str] = Field(["chow", "plugin_balanced", "plugin_worst"], min_length=1)
    rejection_grid: list[float] = Field([round(0.05 * i, 2) for i in range(17)], min_length=1)
    mu_grid: list[float] = Field([round(-2.0 + 0.1 * i, 2) for i in range(41)], min_length=1)
    power_iters: int = Field(10, ge=1)
    """M: power-iteration steps for the group coverages."""
    worst_rounds: int = Field(10, ge=1)
    """T: rounds of Algorithm 2."""
    worst_step: float = Field(1.0, gt=0)
    """xi: exponentiated-gradient step of Algorithm 2."""
    seed: int = seed_field()
    protocol: Literal["argse", "paper"] = "argse"
    """paper: Narasimhan et al. (2024) as published (raw softmax, lambda in {1, 6, 11}, Algorithm 2 with
    T = 25 returning its last iterate fitted on S1); argse: calibrated probabilities, the grids above,
    best-round beta refitted on all of the fitting sample, every power iterate a candidate."""
    test_prior: Literal["train", "balanced"] = "train"
    """train: every rate is taken under the training label distribution (weights pi_train(y)/pi_split(y)),
    as in the paper; balanced: the class-balanced held-out splits as they are."""
    search: Literal["power", "grid"] = "grid"
    """grid: after Algorithm 1/2, search the rule's group weights directly on the fitting sample
    (never worse there); power: Algorithm 1/2 only. protocol=paper always uses power."""
    search_grid: int = Field(21, ge=0)
    """search: grid: points per free weight of the coarse grid scored before the local search (0: none, the
    local search from the algorithm's rule alone; else at least 2)."""
    search_starts: int = Field(3, ge=0)
    """search: grid, with search_grid: local searches also from this many best other candidates of the coarse grid."""
    fit_sample: Literal["rejector_part", "tune"] = "rejector_part"
    """What the rejectors are fitted on: the part of tune the gate did not train on (gating.tune_fraction), the
    same for every row; or all of tune, for an evaluation of experts only (docs/selective.md, "Which samples fit
    what", for the measurement)."""
    bootstrap: int = Field(1000, ge=0, le=100_000)
    """Resamples of test, drawn within each class (class counts fixed), for the interval of every figure
    (0: none)."""
    confidence: float = Field(0.95, gt=0, lt=1)
    """Level of the bootstrap intervals."""
    target_coverage: float = Field(0.8, gt=0, le=1)
    """Coverage at which the risk is reported (risk@coverage)."""
    target_risk: float = Field(0.1, gt=0, lt=1)
    """Risk at which the largest coverage is reported (coverage@risk)."""
    guarantees: list[GuaranteeConfig] = Field(
        default_factory=lambda: [GuaranteeConfig(risk_of="balanced"), GuaranteeConfig(risk_of="worst")]
    )
    """Risks guaranteed by each rejector on the fitting sample and reported with the test risk they reach (predict
    --risk asks for any other)."""
    ladders: bool = True
    """Fit each rejector's candidate rules (on halves of the fitting sample), which guarantees and predict --risk
    pick from; false: no guarantee is reported or can be asked for."""

    @model_validator(mode="after")
    def _ladders(self) -> EvaluateConfig:
        if self.guarantees and not self.ladders:
            raise ValueError("guarantees need the candidate rules: set ladders: true, or guarantees: []")
        return self

    @field_validator("rejection_grid")
    @classmethod
    def _rates(cls, grid: list[float]) -> list[float]:
        bad = [r for r in grid if not 0 <= r < 1]
        if bad:
            raise ValueError(f"rejection_grid values must lie in [0, 1), got {bad[0]}")
        return grid

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        if GATE_RULE in methods:
            raise ValueError(
                f"methods: '{GATE_RULE}' is added by itself for the gating source when its gate learned rules "
                f"(gating.objective: selective_*); remove it from evaluate.methods"
            )
        twice = named_twice(methods)
        if twice is not None:
            raise ValueError(f"methods names '{twice}' twice; name each method once")
        return methods

    @model_validator(mode="after")
    def _check(self) -> EvaluateConfig:
        if self.search_grid == 1:
            raise ValueError("search_grid must be 0 (none) or >= 2, got 1")
        return self


class RunConfig(Section):
    name: str = "default"
    """Run name: outputs/<name>/ and checkpoints/<name>/ (the built-in settings, with no --config: default)."""
    seed: int = seed_field()
    output_dir: str = "outputs"
    checkpoint_dir: str = "checkpoints"
    recipes_dir: str = ""
    """A folder of your own recipes (<expert>.yaml, presets/<expert>.<preset>.yaml), read before each expert's
    own (argse's experts/ for the built-ins, a plugin's ``recipes_dir``); empty: the experts' own only."""
    plugins: list[str] = []
    """Modules imported when the config is loaded, before any registry is used (third-party experts,
    samplers, rejectors, datasets); every command loads them, then the entry points of every argse group."""
    experts: list[str] = Field(list(BUILTIN_EXPERTS), min_length=1)
    """Experts trained by train_experts (and mixed by the gate) when --experts is not given."""
    recipes: dict[str, Any] = {}
    """Per-expert overrides of experts/<name>.yaml, e.g. {ce: {epochs: 5}}."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    gating: GatingConfig = GatingConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    """Where each value that is no default came from (argse.config.loading), for --print-config."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        """A plain folder name, so outputs/<name>/ stays inside output_dir (and checkpoint_dir); printable, so every
        message and page shows it as it is; and short, so the folders argse names after it (a seed's, a cost's)
        fit every file system's limit of 255 bytes."""
        if not name or any(c in name for c in "/\\\0") or name.startswith("."):
            raise ValueError(
                f"name must be a plain folder name (not empty, no '/', '\\' or '..', not starting with '.'), "
                f"got {name!r}; set name=my_run"
            )
        if not name.isprintable():
            raise ValueError(f"name must be printable (no newline, tab or control character), got {name!r}")
        if len(name.encode()) > MAX_NAME_BYTES:
            raise ValueError(
                f"name must be at most {MAX_NAME_BYTES} bytes, got {len(name.encode())}; choose a shorter one"
            )
        return name

    @field_validator("experts")
    @classmethod
    def _each_once(cls, experts: list[str]) -> list[str]:
        twice = named_twice(experts)
        if twice is not None:
            raise ValueError(f"'{twice}' is named twice in the config's 'experts' list; name each expert once")
        return experts

    @field_validator("output_dir", "checkpoint_dir")
    @classmethod
    def _folder(cls, folder: str, info) -> str:
        """Not empty, and no regular file on its way (mkdir -p would fail)."""
        if not folder:
            raise ValueError(f"{info.field_name} must name a folder, got ''")
        for part in [Path(folder), *Path(folder).parents]:
            if part.exists() and not part.is_dir():
                raise ValueError(
                    f"{info.field_name}={folder!r} is not a folder: {part} is a regular file; point "
                    f"{info.field_name} at a folder"
                )
        return folder

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def ckpt_dir(self) -> Path:
        return Path(self.checkpoint_dir) / self.name

    def __eq__(self, other: object) -> bool:  # by value: where the values came from is no part of the config
        return isinstance(other, RunConfig) and self.model_dump() == other.model_dump()

    def origin(self, dotted: str) -> str:
        """Where the value at ``dotted`` came from: a file, a --set, the command's options, or 'default'."""
        return self._origins.get(dotted, "default")
