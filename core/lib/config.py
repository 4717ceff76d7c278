"""Experiment configs as typed dataclasses. Profiles and `--set` apply dotted overrides, checked for type."""
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from core.lib.errors import UserError


@dataclass
class DataConfig:
    dataset: str = "cifar10"
    labels: str = "fine"                 # cifar100: fine or coarse labels
    imbalance: float = 0.0               # >1: odd classes keep 1/imbalance of their images (TA-VAAL supp. Fig. 6)
    validation_size: int = 0             # held out of the pool for checkpoint selection (VAAL: 5,000)
    test_size: int = 0                   # datasets without an official split get a per-seed test set this big
    train_subset: int = 0                # profiles only: a fixed subset of the training images (0: all)
    test_subset: int = 0                 # profiles only: a fixed subset of the test images (0: all)
    normalization: str = "dataset"       # dataset mean/std; "half": Normalize(0.5, 0.5) as the VAAL code;
                                         # "cifar10_code": the LL4AL/TA-VAAL/LADA codes' CIFAR-10 statistics;
                                         # "none": pixels in [0, 1] (ToTensor only: TA-VAAL's SVHN/FMNIST)
    hflip: bool = True
    crop_padding: int = 0                # RandomCrop(size, padding) when > 0
    image_size: int = 224                # large-image datasets: crop size (segmentation: 0 trains on whole images)
    resize: int = 256                    # large-image datasets: shorter side before cropping
    workers: int = 2                     # DataLoader workers for large-image datasets (rows do not depend on it)


@dataclass
class ProtocolConfig:
    initial: float = 0.1                 # < 1: fraction of the training images; >= 1: a count
    budget: float = 0.05                 # same convention
    cycles: int = 7                      # trained models; a selection follows every one but the last
    subset: int = 0                      # M random unlabeled points scored per cycle (0: the whole pool)
    initial_kind: str = "random"         # random, balanced (LADA) or biased (VAAL Fig. 5)
    missing_classes: int = 0             # biased initial set: classes left out
    oracle_noise: float = 0.0            # fraction of labels flipped within the superclass (VAAL Sec. 5.2)
    fraction_base: int = 0               # images the paper's label fractions refer to (0: the training split)


@dataclass
class ModelConfig:
    arch: str = "vgg16_bn"
    width: float = 1.0
    init: str = "default"                # xavier, torchvision or default (PyTorch's)
    pretrained: str = ""                 # segmentation backbones: ImageNet weights from a local file or a URL


@dataclass
class TrainConfig:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 0                      # epoch-based schedule over the labeled set
    iterations: int = 0                  # iteration-based schedule (VAAL); takes precedence when > 0
    drop_last: bool = False
    drop_last_first_cycle: bool = False  # drop the last partial batch in cycle 0 only (TA-VAAL's code, T13)
    schedule: str = "constant"           # constant, multistep, step, quarter (divide at T/4, T/2, 3T/4), poly
    milestones: list = field(default_factory=list)
    step_size: int = 0
    gamma: float = 0.1
    reinit: bool = True                  # new model every cycle; False warm-starts from the last cycle's model
    keep_optimizer: bool = False         # carry the optimizer's state of the model's parameters (Adam's moments
                                         # and step) from cycle to cycle, as LADA's code builds Adam once
    init_seed: str = "cycle"             # a new model's weights come from (seed, cycle), or from the seed only
                                         # ("seed": every cycle restarts from the same weights, LADA L5)
    select_on_validation: bool = False   # test the checkpoint that is best on the validation set
    validate_every: int = 0              # in epochs or iterations; 0 validates only at the end
    amp: bool = False                    # bfloat16 autocast on CUDA
    loss: str = "cross_entropy"          # masks only: smp's dice, focal or lovasz instead (fyu/drn: cross-entropy)
    eval_batch_size: int = 500


@dataclass
class RuntimeConfig:
    """How a job runs, not what it computes: left out of the run hash, so a job may resume under other values."""

    checkpoint_every: int = 0            # mid-cycle checkpoint every N epochs of training or a game (0: none)
    channels_last: str = "auto"          # NHWC weights and batches in training; auto: on for conv nets on CUDA
    compile: str = "off"                 # torch.compile of the training step, evaluation and scoring forwards:
                                         # on, or graphs (mode reduce-overhead: CUDA graphs on a GPU; on the CPU
                                         # it compiles as on). Batches of other than the full size run eagerly
    sync_batchnorm: bool = True          # under torchrun on CUDA: BatchNorm statistics over the global batch
    stop_after_cycles: int = 0           # run only the first N cycles (verify); 0: the whole protocol
    deterministic: bool = True           # false allows ops CUDA cannot run deterministically (rows record it)

    def __post_init__(self):
        if isinstance(self.compile, bool):     # config.json files written when compile was a bool still load
            self.compile = "on" if self.compile else "off"


@dataclass
class ExperimentConfig:
    paper: str = ""
    experiment: str = ""
    title: str = ""
    source: str = ""                     # where the protocol comes from, e.g. "VAAL Fig. 2, Tables 2-3"
    metric: str = "accuracy"
    methods: list = field(default_factory=list)
    extra_methods: list = field(default_factory=list)   # those of `methods` beyond the paper's own (BADGE)
    seeds: int = 5
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_options: dict = field(default_factory=dict)   # {method: {option: value}}
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


SECTIONS = {"data": DataConfig, "protocol": ProtocolConfig, "model": ModelConfig, "train": TrainConfig,
            "runtime": RuntimeConfig}

CHOICES = {
    "data.labels": ("fine", "coarse"),
    "data.normalization": ("dataset", "half", "cifar10_code", "none"),
    "protocol.initial_kind": ("random", "balanced", "biased"),
    "model.init": ("default", "xavier", "torchvision"),
    "train.optimizer": ("sgd", "adam"),
    "train.init_seed": ("cycle", "seed"),
    "train.schedule": ("constant", "multistep", "step", "quarter", "poly"),
    "train.loss": ("cross_entropy", "dice", "focal", "lovasz"),
    "runtime.channels_last": ("auto", "on", "off"),
    "runtime.compile": ("off", "on", "graphs"),
}


BOOLEAN_WORDS = ("true", "false", "1", "0", "yes", "no")


def _scalar(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def coerce(key: str, kind, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in BOOLEAN_WORDS:
            return value.lower() in ("true", "1", "yes")
    elif kind in (int, float):
        if isinstance(value, bool):
            pass
        elif isinstance(value, (int, float)) and (kind is float or float(value).is_integer()):
            return kind(value)
        elif isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, str):
        return value
    elif kind is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [_scalar(v.strip()) for v in value.split(",") if v.strip()]
    elif kind is dict and isinstance(value, dict):
        return value
    raise UserError(f"config value {key} must be {kind.__name__}, got {value!r}; fix it in --set {key}=...")


def set_value(config, key: str, value) -> None:
    """Set a dotted key (`train.lr`, or `method_options.mc_dropout.passes`) with type checking."""
    parts = key.split(".")
    target = config
    for index, part in enumerate(parts[:-1]):
        if isinstance(target, dict):
            target = target.setdefault(part, {})
        elif dataclasses.is_dataclass(target) and part in {f.name for f in dataclasses.fields(target)}:
            target = getattr(target, part)
        else:
            raise UserError(f"unknown config key '{key}' ('{'.'.join(parts[:index + 1])}' does not exist); "
                            "see ./reproduce.sh describe <paper> <experiment> for the keys")
    name = parts[-1]
    if isinstance(target, dict):      # method options: `--set` gives text, read as JSON where it parses
        target[name] = _scalar(value) if isinstance(value, str) else value
        return
    hints = typing.get_type_hints(type(target))
    if name not in hints or dataclasses.is_dataclass(getattr(target, name)):
        raise UserError(f"unknown config key '{key}'; see ./reproduce.sh describe <paper> <experiment> for the keys")
    setattr(target, name, coerce(key, typing.get_origin(hints[name]) or hints[name], value))


def apply_overrides(config, overrides: dict[str, Any]):
    for key, value in overrides.items():
        set_value(config, key, value)
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Refuse values no run can use, before any work starts: a run with lr=inf would write rows of NaN."""
    if str(config.runtime.compile).lower() in BOOLEAN_WORDS:
        raise UserError(f"config value runtime.compile='{config.runtime.compile}' is no longer a boolean: set "
                        "--set runtime.compile=on (was true), off (was false) or graphs (CUDA graphs)")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise UserError(f"config value {key}='{value}' is not one of {', '.join(allowed)}")
    for section in SECTIONS:
        for item in dataclasses.fields(getattr(config, section)):
            value = getattr(getattr(config, section), item.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise UserError(f"config value {section}.{item.name}={value} must be a finite number")
    train, protocol, data = config.train, config.protocol, config.data
    if train.epochs <= 0 and train.iterations <= 0:
        raise UserError("train.epochs or train.iterations must be positive")
    positive = {"train.lr": train.lr, "train.batch_size": train.batch_size, "protocol.cycles": protocol.cycles,
                "protocol.budget": protocol.budget, "protocol.initial": protocol.initial, "seeds": config.seeds,
                "model.width": config.model.width, "train.eval_batch_size": train.eval_batch_size}
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"config value {key}={value} must be positive")
    not_negative = {"train.epochs": train.epochs, "train.iterations": train.iterations,
                    "train.momentum": train.momentum, "train.weight_decay": train.weight_decay,
                    "train.step_size": train.step_size, "train.validate_every": train.validate_every,
                    "data.imbalance": data.imbalance, "data.validation_size": data.validation_size,
                    "data.test_size": data.test_size, "data.train_subset": data.train_subset,
                    "data.test_subset": data.test_subset, "data.crop_padding": data.crop_padding,
                    "data.workers": data.workers, "protocol.subset": protocol.subset,
                    "protocol.missing_classes": protocol.missing_classes,
                    "protocol.fraction_base": protocol.fraction_base, "train.gamma": train.gamma,
                    "data.image_size": data.image_size, "data.resize": data.resize,
                    "runtime.checkpoint_every": config.runtime.checkpoint_every,
                    "runtime.stop_after_cycles": config.runtime.stop_after_cycles}
    for key, value in not_negative.items():
        if value < 0:
            raise UserError(f"config value {key}={value} must not be negative (0 keeps the default behaviour)")
    if not 0 <= protocol.oracle_noise < 1:
        raise UserError(f"config value protocol.oracle_noise={protocol.oracle_noise} must be in [0, 1)")
    if not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in train.milestones):
        raise UserError(f"config value train.milestones={train.milestones} must be positive integers")
    if train.select_on_validation and config.data.validation_size <= 0:
        raise UserError("train.select_on_validation needs data.validation_size > 0")


def cycle_training(train: TrainConfig, cycle: int) -> TrainConfig:
    """The task model's training settings in `cycle`: `drop_last_first_cycle` sets `drop_last` in cycle 0."""
    if train.drop_last_first_cycle and cycle == 0:
        return dataclasses.replace(train, drop_last=True)
    return train


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(data: dict) -> ExperimentConfig:
    values = {k: v for k, v in data.items() if k not in SECTIONS}
    return ExperimentConfig(**values, **{name: cls(**data.get(name, {})) for name, cls in SECTIONS.items()})


# What run_hash covers, numbered and stored in each run folder (core.tools.jobs), so that an older folder is refused
# as such. 1: the method options the config wrote; 2: the method's defaults too. A new config key raises it.
HASH_SCHEME = 2


def run_hash(config: ExperimentConfig, method: str) -> str:
    """Identifies everything that determines one method's results: the config and the method's resolved options
    (its defaults with the config's over them, so that a changed default is a different run); the method and
    seed lists and the runtime section do not."""
    from core.lib.strategy import make_strategy      # here: reading a config needs no PyTorch

    content = to_dict(config)
    for name in ("methods", "extra_methods", "seeds", "runtime"):
        content.pop(name)
    content["method_options"] = make_strategy(method, content["method_options"].get(method)).options
    content["method"] = method
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
