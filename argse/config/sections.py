"""The run config's sections (data, model, runtime, gating, evaluate) and the run itself, with the
value checks of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from argse.core import seeds

# ---------------------------------------------------------------- the run config

BUILTIN_EXPERTS = ["ce", "logit_adjust", "balanced_softmax", "decoupling", "posthoc_adjust"]


# Keys that sat flat under ``data`` before each dataset had its own section, and where they went,
# so that an older config is told where to move a key instead of only that it is unknown.
MOVED_DATA_KEYS = {
    **{f"synthetic_{k}": f"synthetic_lt.{k}" for k in ("classes", "max_per_class", "test_per_class", "image_size")},
    **{k: f"list_lt.{k}" for k in ("train_list", "test_lists", "image_size", "resize")},
    "download": "cifar10_lt.download (or cifar100_lt.download)",
    "cache_dir": "imagefolder_lt.cache_dir",
}


@dataclass
class DataConfig:
    dataset: str = "synthetic_lt"
    """A registered dataset (argse.datasets: synthetic_lt, cifar10_lt, cifar100_lt, imagefolder_lt, list_lt, or a
    plugin's); its own options are the section of the same name, e.g. ``synthetic_lt: {classes: 10}``."""
    root: str = "data"
    """Where the dataset's files are: the torchvision files, the image tree / .tar.gz for imagefolder_lt, the
    image root for list_lt (synthetic_lt reads nothing)."""
    # long-tailed profile (Cao et al. 2019)
    imbalance_factor: float = 100.0
    """n_max / n_min of the training set."""
    # held-out splits, fractions of the official test set per class
    val_fraction: float = 0.2
    tune_fraction: float = 0.3
    test_fraction: float = 0.5
    # groups
    tail_max_count: int = 20
    """Classes with at most this many training images form the tail group."""
    many_min_count: int = 100
    """Many-shot: more than this many training images."""
    few_max_count: int = 20
    """Few-shot: fewer than this many training images."""
    sections: dict[str, Any] = field(default_factory=dict, metadata={"sections": "a dataset"})
    """One section per dataset, named after it (``data.list_lt.train_list``): its options dataclass reads it
    (argse.datasets checks every section against the registry when the data is loaded)."""

    def __post_init__(self) -> None:
        _require(self.imbalance_factor >= 1, f"imbalance_factor must be >= 1, got {self.imbalance_factor}")
        fracs = (self.val_fraction, self.tune_fraction, self.test_fraction)
        if min(fracs) <= 0 or sum(fracs) > 1 + 1e-9:
            raise ValueError(f"val/tune/test fractions must be positive and sum to at most 1, got {fracs}")
        # An empty group is found once the class counts are known (argse.data.splits.check_counts).
        _require(
            self.tail_max_count >= 1,
            f"tail_max_count must be >= 1 (every class keeps at least one image), got {self.tail_max_count}",
        )
        _require(self.many_min_count >= 0, f"many_min_count must be >= 0, got {self.many_min_count}")
        _require(
            0 <= self.few_max_count <= self.many_min_count,
            f"few_max_count must lie in [0, many_min_count={self.many_min_count}], got {self.few_max_count}",
        )


@dataclass
class ModelConfig:
    arch: Literal["resnet_cifar", "resnet50", "resnext50_32x4d"] = "resnet_cifar"
    """resnet_cifar: CIFAR ResNet of He et al. 2016 (option-A shortcuts); the others come from torchvision."""
    depth: int = 32
    """resnet_cifar: 6n+2: 20, 32, 44, 56, 110."""
    width: int = 16
    """resnet_cifar: channels of the first stage (16 in the paper)."""
    zero_init_residual: bool = True
    """resnet50 / resnext50_32x4d: start each residual branch at zero (Goyal et al. 2017), so the
    untrained network is stable; false gives torchvision's plain initialisation."""

    def __post_init__(self) -> None:
        if self.arch == "resnet_cifar" and (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, ...), got {self.depth}")
        _require(self.width >= 1, f"width must be >= 1 (16 in the paper), got {self.width}")


@dataclass
class RuntimeConfig:
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
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default (one per core)."""
    eval_batch_size: int = 1000
    progress: bool = True
    """Show rich progress bars (rank 0 only under torchrun)."""
    log_lines: Literal["auto", "always", "never"] = "auto"
    """One plain line per training epoch (epoch, loss, val balanced accuracy, lr, seconds, ETA): 'auto'
    when stdout is not a terminal (nohup, a batch job, CI), where no progress bar is drawn."""
    tensorboard: bool = False
    """Also write each epoch's metrics as TensorBoard events beside metrics.jsonl (pip install argse[tensorboard])."""
    workers: int = 8
    """DataLoader worker processes that decode JPEGs (list_lt; the in-memory datasets need none)."""
    sync_bn: bool = True
    """Under torchrun, BatchNorm statistics span all ranks, so N processes train like one."""
    dist_timeout_s: int = 1800
    """Under torchrun, how long a collective waits for the other ranks before failing."""

    def __post_init__(self) -> None:
        _require(self.threads >= 0, f"threads must be >= 0 (0 keeps torch's default), got {self.threads}")
        _require(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        _require(self.workers >= 0, f"workers must be >= 0 (0 decodes in the main process), got {self.workers}")
        _require(self.dist_timeout_s >= 1, f"dist_timeout_s must be >= 1, got {self.dist_timeout_s}")


@dataclass
class GatingConfig:
    gate: Literal["learned", "uniform", "fixed"] = "learned"
    fixed_weights: list[float] = field(default_factory=list)
    """Weights per expert (in --experts order) when gate=fixed."""
    features: Literal["rich", "rich+posteriors"] = "rich"
    objective: Literal["nll", "balanced_nll", "selective_balanced", "selective_worst"] = "balanced_nll"
    """nll / balanced_nll: the mixture's (class-balanced) NLL. selective_balanced / selective_worst: after a
    balanced-NLL warm-up, the gate is trained jointly with a plug-in rule (group weights and threshold per
    target rejection rate) on a smooth surrogate of the balanced / worst-group selective error (docs/gating.md, "Selective objectives")."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    dropout: float = 0.1
    lr: float = 3e-3
    weight_decay: float = 1e-4
    epochs: int = 100
    batch_size: int = 0
    """0 = full batch."""
    patience: int = 20
    """Early stopping on val NLL."""
    top_k: int = 5
    seed: int = 0
    tune_fraction: float = 0.5
    """Share of ``tune`` (per class, seeded by the run seed) that trains the gate; the rest fits every
    source's rejectors in ``evaluate``, so no rejector is fitted on the samples that trained the gate."""
    # selective objectives only
    selective_rates: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6])
    """Target rejection rates the gate is trained for; each gets its own rule (alpha, b, t)."""
    selective_temperature: float = 0.05
    """Smoothness of the surrogate: acceptance sigmoid((score - t) / T) and a softmax(alpha p / T) prediction."""
    selective_coverage_weight: float = 10.0
    """Weight of the squared gap between the soft rejection rate and its target."""
    selective_warmup_epochs: int = 100
    """Epochs (at most; early-stopped on val NLL) of balanced-NLL training before the selective objective
    takes over. The default is the NLL gate's own schedule, so the selective gate starts from it."""
    selective_rule_lr: float = 0.02
    """Adam step for the rule's parameters (log alpha, mu, t); the gate keeps ``lr``."""
    selective_eg_step: float = 1.0
    """selective_worst: exponentiated-gradient step of the group weights, once per epoch."""

    def __post_init__(self) -> None:
        check_gating(self)


@dataclass
class EvaluateConfig:
    sources: list[str] = field(default_factory=list)
    """Experts and/or 'gating'; empty = every source with exported logits."""
    methods: list[str] = field(default_factory=lambda: ["chow", "plugin_balanced", "plugin_worst"])
    rejection_grid: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(17)])
    mu_grid: list[float] = field(default_factory=lambda: [round(-2.0 + 0.1 * i, 2) for i in range(41)])
    power_iters: int = 10
    """M: power-iteration steps for the group coverages."""
    worst_rounds: int = 10
    """T: rounds of Algorithm 2."""
    worst_step: float = 1.0
    """xi: exponentiated-gradient step of Algorithm 2."""
    seed: int = 0
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
    search_grid: int = 21
    """search: grid: points per free weight of the coarse grid scored before the local search (0: none, the
    local search from the algorithm's rule alone)."""
    search_starts: int = 3
    """search: grid, with search_grid: local searches also from this many best other candidates of the coarse grid."""

    def __post_init__(self) -> None:
        bad = [r for r in self.rejection_grid if not 0 <= r < 1]
        if bad:
            raise ValueError(f"rejection_grid values must lie in [0, 1), got {bad[0]}")
        check_evaluate(self)


# ---------------------------------------------------------------- value checks of gating / evaluate
# Values that would crash deep inside a run, or silently do nothing, are refused at load time
# (ValueError here; from_dict turns it into "invalid config in 'gating': ...").


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check_gating(g: GatingConfig) -> None:
    _require(g.lr > 0, f"lr must be > 0, got {g.lr}")
    _require(0 <= g.dropout < 1, f"dropout must lie in [0, 1), got {g.dropout}")
    _require(g.weight_decay >= 0, f"weight_decay must be >= 0, got {g.weight_decay}")
    _require(
        g.epochs >= 1 or g.gate != "learned",
        f"epochs must be >= 1 for gate 'learned' (got {g.epochs}); use gate: uniform or fixed for an untrained gate",
    )
    _require(g.batch_size >= 0, f"batch_size must be >= 0 (0 = full batch), got {g.batch_size}")
    _require(g.patience >= 1, f"patience must be >= 1, got {g.patience}")
    _require(g.top_k >= 1, f"top_k must be >= 1, got {g.top_k}")
    _require(all(h >= 1 for h in g.hidden), f"hidden sizes must be >= 1, got {g.hidden}")
    _require(0 < g.tune_fraction < 1, f"tune_fraction must lie in (0, 1), got {g.tune_fraction}")
    _require(
        bool(g.selective_rates) and all(0 < r < 1 for r in g.selective_rates),
        f"selective_rates must be non-empty and lie in (0, 1), got {g.selective_rates}",
    )
    _require(g.selective_temperature > 0, f"selective_temperature must be positive, got {g.selective_temperature}")
    _require(
        g.selective_coverage_weight >= 0,
        f"selective_coverage_weight must be >= 0, got {g.selective_coverage_weight}",
    )
    _require(g.selective_warmup_epochs >= 0, f"selective_warmup_epochs must be >= 0, got {g.selective_warmup_epochs}")
    _require(g.selective_rule_lr > 0, f"selective_rule_lr must be > 0, got {g.selective_rule_lr}")
    _require(g.selective_eg_step > 0, f"selective_eg_step must be > 0, got {g.selective_eg_step}")
    seeds.check(g.seed)
    _require(
        g.gate != "fixed" or (bool(g.fixed_weights) and min(g.fixed_weights) >= 0 and sum(g.fixed_weights) > 0),
        f"fixed_weights must hold one non-negative weight per expert, not all zero, for gate 'fixed' "
        f"(got {g.fixed_weights}); set gating.fixed_weights=[w1, w2, ...] in --experts order",
    )


def check_evaluate(e: EvaluateConfig) -> None:
    _require(bool(e.rejection_grid), "rejection_grid must hold at least one rejection rate, e.g. [0.0, 0.1, 0.2]")
    _require(bool(e.mu_grid), "mu_grid must hold at least one value, e.g. [-1.0, 0.0, 1.0]")
    _require(e.power_iters >= 1, f"power_iters must be >= 1, got {e.power_iters}")
    _require(e.worst_rounds >= 1, f"worst_rounds must be >= 1, got {e.worst_rounds}")
    _require(e.worst_step > 0, f"worst_step must be > 0, got {e.worst_step}")
    _require(e.search_grid == 0 or e.search_grid >= 2, f"search_grid must be 0 (none) or >= 2, got {e.search_grid}")
    _require(e.search_starts >= 0, f"search_starts must be >= 0, got {e.search_starts}")
    seeds.check(e.seed)
    check_methods(e.methods)


def named_twice(names: list[str]) -> str | None:
    """The first name that ``names`` holds more than once, or None."""
    return next((n for n in sorted(names) if names.count(n) > 1), None)


# The rule a selective gate learned with itself (gating.objective: selective_*); evaluate adds it for the
# gating source only, so it is not a rejector a config may name.
GATE_RULE = "gate_rule"


def check_methods(methods: list[str]) -> None:
    """evaluate.methods: each rejector once, and not gate_rule; evaluate checks the names against the registry."""
    if GATE_RULE in methods:
        raise ValueError(
            f"methods: '{GATE_RULE}' is added by itself for the gating source when its gate learned rules "
            f"(gating.objective: selective_*); remove it from evaluate.methods"
        )
    _require(bool(methods), "methods must name at least one rejector, e.g. [chow, plugin_balanced, plugin_worst]")
    twice = named_twice(methods)
    _require(twice is None, f"methods names '{twice}' twice; name each method once")


def check_run_name(name: str) -> None:
    """A run name is one plain folder name, so outputs/<name>/ stays inside output_dir (and checkpoint_dir)."""
    plain = bool(name) and not any(c in name for c in "/\\\0") and not name.startswith(".")
    _require(
        plain,
        f"name must be a plain folder name (not empty, no '/', '\\' or '..', not starting with '.'), got {name!r}; "
        f"set name=my_run",
    )


def check_folder(key: str, folder: str) -> None:
    """``output_dir`` / ``checkpoint_dir``: not empty, and no regular file on its way (mkdir -p would fail)."""
    _require(bool(folder), f"{key} must name a folder, got ''")
    for part in [Path(folder), *Path(folder).parents]:
        if part.exists() and not part.is_dir():
            raise ValueError(f"{key}={folder!r} is not a folder: {part} is a regular file; point {key} at a folder")


@dataclass
class RunConfig:
    name: str = "default"
    """Run name: outputs/<name>/ and checkpoints/<name>/ (the built-in settings, with no --config: default)."""
    seed: int = 0
    output_dir: str = "outputs"
    checkpoint_dir: str = "checkpoints"
    recipes_dir: str = ""
    """A folder of your own recipes (<expert>.yaml, presets/<expert>.<preset>.yaml), read before each expert's
    own (argse's experts/ for the built-ins, a plugin's ``recipes_dir``); empty: the experts' own only."""
    plugins: list[str] = field(default_factory=list)
    """Modules imported when the config is loaded, before any registry is used (third-party experts,
    samplers, rejectors, datasets); every command loads them, then the entry points of every argse group."""
    experts: list[str] = field(default_factory=lambda: list(BUILTIN_EXPERTS))
    """Experts trained by train_experts (and mixed by the gate) when --experts is not given."""
    recipes: dict[str, Any] = field(default_factory=dict)
    """Per-expert overrides of experts/<name>.yaml, e.g. {ce: {epochs: 5}}."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    gating: GatingConfig = field(default_factory=GatingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        check_run_name(self.name)
        seeds.check(self.seed)
        _require(bool(self.experts), "experts must name at least one expert, e.g. [ce]")
        twice = named_twice(self.experts)
        _require(twice is None, f"'{twice}' is named twice in the config's 'experts' list; name each expert once")
        for key in ("output_dir", "checkpoint_dir"):
            check_folder(key, getattr(self, key))

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def ckpt_dir(self) -> Path:
        return Path(self.checkpoint_dir) / self.name
