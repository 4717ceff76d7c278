"""VAAL's classification experiments (Fig. 2), with sizes from Table 2 and hyperparameters from Table 3 and
Sec. 4.1; the paper-vs-code decisions are REFERENCES.md section 2 (V1-V18) and section 6."""
from core.config import DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig
from core.experiments import Experiment, mini_profile, register, smoke_profile

FIG2_METHODS = ["vaal", "coreset", "ensemble_varratio", "mc_dropout", "entropy", "random"]


def vaal_task_training(iterations: int, lr: float = 5e-4, optimizer: str = "adam") -> TrainConfig:
    """Sec. 4.1: Adam 5e-4 and batch 64 for the task model (V2, V4); T = 50,000 x 100 epochs / 64 iterations
    per cycle whatever the labeled-set size (V3); the best-validation checkpoint is tested (V7), validated
    every 1,000 iterations as the official code."""
    return TrainConfig(optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=0.0, batch_size=64,
                       iterations=iterations, drop_last=True, schedule="constant", select_on_validation=True,
                       validate_every=1000)


def cifar(dataset: str) -> ExperimentConfig:
    return ExperimentConfig(
        title=f"VAAL Fig. 2: {dataset.upper()}", source="VAAL Fig. 2; Table 2 (sizes), Table 3 (hyperparameters)",
        methods=list(FIG2_METHODS), seeds=5,
        data=DataConfig(dataset=dataset, validation_size=5000, normalization="half", hflip=True),
        protocol=ProtocolConfig(initial=0.1, budget=0.05, cycles=7),
        model=ModelConfig(arch="vgg16_bn", init="xavier"),
        train=vaal_task_training(50000 * 100 // 64))


def caltech256() -> ExperimentConfig:
    config = cifar("caltech256")
    config.title = "VAAL Fig. 2: Caltech-256"
    config.data = DataConfig(dataset="caltech256", validation_size=3000, test_size=2560, hflip=True,
                             image_size=224, resize=256)
    config.protocol = ProtocolConfig(initial=3060, budget=1530, cycles=7)
    config.train = vaal_task_training(27607 * 100 // 64)
    return config


def imagenet() -> ExperimentConfig:
    """10% to 30% over 2 runs (Sec. 4.1); the task learning rate 0.1 (V11) is SGD's, as Adam diverges at 0.1."""
    config = cifar("imagenet")
    config.title, config.seeds = "VAAL Fig. 2: ImageNet", 2
    config.data = DataConfig(dataset="imagenet", validation_size=128120, hflip=True, image_size=224, resize=256)
    config.protocol = ProtocolConfig(initial=128120, budget=64060, cycles=5)
    config.train = vaal_task_training(1153047 * 100 // 64, lr=0.1, optimizer="sgd")
    return config


CIFAR_MINI = mini_profile(**{"data.validation_size": 1000, "train.iterations": 800, "train.validate_every": 200})
CIFAR_SMOKE = smoke_profile(**{"data.validation_size": 50, "train.iterations": 4, "train.validate_every": 2})
LARGE_SMOKE = smoke_profile(**{"data.train_subset": 0, "data.validation_size": 20, "data.test_size": 40,
                               "data.image_size": 32, "data.resize": 36, "data.workers": 0,
                               "protocol.initial": 40, "protocol.budget": 20, "train.iterations": 2,
                               "train.validate_every": 1, "train.batch_size": 16})

register(Experiment("vaal", "fig2_cifar10", lambda: cifar("cifar10"), {"smoke": CIFAR_SMOKE, "mini": CIFAR_MINI}))
register(Experiment("vaal", "fig2_cifar100", lambda: cifar("cifar100"), {"smoke": CIFAR_SMOKE, "mini": CIFAR_MINI}))
register(Experiment("vaal", "fig2_caltech256", caltech256, {"smoke": LARGE_SMOKE}))
register(Experiment("vaal", "fig2_imagenet", imagenet, {"smoke": LARGE_SMOKE}))
