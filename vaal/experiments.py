"""Every classification figure of VAAL (Fig. 2, 5, 6, and the Fig. 4 ablation methods on CIFAR-10), with sizes
from Table 2 and hyperparameters from Table 3 and Sec. 4.1. Paper-vs-code decisions: REFERENCES.md sections 2
(V1-V18) and 6; alternatives are config options listed in vaal/README.md. Fig. 3 and Fig. 4 (segmentation)
belong to the segmentation package."""
from core.lib import (DataConfig, Experiment, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, dataset_spec,
                      mini_profile, register_experiment, smoke_profile)

FIG2_METHODS = ["vaal", "coreset", "ensemble_varratio", "mc_dropout", "entropy", "random", "full_data"]
VAAL_FAMILY = ("vaal", "vaal_pixel_disc", "vaal_frozen_vae", "vae_wasserstein")
TABLE3 = {   # dataset: (d, alpha1 VAE lr, alpha2 D lr, lambda2); lambda1 = beta = 1, 100 epochs, batch 64 (8 for
    # the segmentation rows, whose experiments live in segmentation/experiments.py)
    "cifar10": (32, 5e-4, 5e-4, 1.0), "cifar100": (32, 5e-4, 5e-4, 1.0), "caltech256": (64, 5e-4, 5e-4, 10.0),
    "imagenet": (64, 1e-3, 1e-3, 10.0), "bdd100k": (128, 1e-3, 1e-3, 25.0), "cityscapes": (128, 1e-3, 1e-3, 25.0),
}


def vaal_options(dataset: str, **extra) -> dict:
    """Table 3's row of `dataset` for VAAL and its ablations, plus `extra` options."""
    latent, vae_lr, disc_lr, lambda2 = TABLE3[dataset]
    options = {"latent_dim": latent, "vae_lr": vae_lr, "disc_lr": disc_lr, "lambda2": lambda2, **extra}
    return {name: dict(options) for name in VAAL_FAMILY}


def training_images(data: DataConfig) -> int:
    """N of V3: the training split a job sees, validation included: 50,000 on CIFAR, 1,281,167 on ImageNet; on
    Caltech-256 the 29,780 images of its 256 classes (Table 2's 27,607 + 3,000 count 257.clutter's 827 too) less
    the per-seed test set."""
    return dataset_spec(data.dataset).split_sizes(data.test_size)[0]


def vaal_task_training(train_size: int, lr: float = 5e-4, optimizer: str = "adam") -> TrainConfig:
    """Sec. 4.1: Adam 5e-4 and batch 64 for the task model (V2, V4); T = N x 100 epochs / 64 iterations per
    cycle whatever the labeled-set size (V3; N = 50,000 on CIFAR); the best-validation checkpoint is tested (V7),
    validated every 1,000 iterations as the official code, without augmentation."""
    return TrainConfig(optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=0.0, batch_size=64,
                       iterations=train_size * 100 // 64, drop_last=True, schedule="constant",
                       select_on_validation=True, validate_every=1000)


def fig2(dataset: str) -> ExperimentConfig:
    config = ExperimentConfig(
        title=f"VAAL Fig. 2: {dataset}", source="VAAL Fig. 2, Sec. 4.1; Table 2 (sizes), Table 3 (hyperparameters)",
        methods=list(FIG2_METHODS), seeds=5,
        data=DataConfig(dataset=dataset, validation_size=5000, normalization="half", hflip=True),
        protocol=ProtocolConfig(initial=0.1, budget=0.05, cycles=7),
        model=ModelConfig(arch="vgg16_bn", init="xavier"), method_options=vaal_options(dataset))
    lr, optimizer = 5e-4, "adam"
    if dataset == "caltech256":
        config.data = DataConfig(dataset="caltech256", validation_size=3000, test_size=2560, hflip=True,
                                 image_size=224, resize=256)
        config.protocol = ProtocolConfig(initial=3060, budget=1530, cycles=7)
    if dataset == "imagenet":
        # 10% to 30%, 2 runs (Sec. 4.1); the task learning rate 0.1 (V11) with SGD: Adam diverges at 0.1
        config.seeds = 2
        config.data = DataConfig(dataset="imagenet", validation_size=128120, hflip=True, image_size=224, resize=256)
        config.protocol = ProtocolConfig(initial=128120, budget=64060, cycles=5)
        lr, optimizer = 0.1, "sgd"
    config.train = vaal_task_training(training_images(config.data), lr, optimizer)
    return config


def fig5(kind: str, value: float) -> ExperimentConfig:
    """Sec. 5.2 on CIFAR-100: noisy oracle (10/20/30%), budget 5% vs 10%, biased initial pool (m = 10, 20)."""
    config = fig2("cifar100")
    config.source = "VAAL Fig. 5, Sec. 5.2"
    if kind == "noise":
        config.title, config.methods = f"VAAL Fig. 5: noisy oracle {value:.0%}", ["vaal", "coreset", "random"]
        config.protocol.oracle_noise = value
    elif kind == "budget":
        config.title = f"VAAL Fig. 5: budget {value:.0%}"
        config.methods = ["vaal", "coreset", "ensemble_varratio", "random"]
        config.protocol.budget, config.protocol.cycles = value, round(0.3 / value) + 1
    else:
        config.title, config.methods = f"VAAL Fig. 5: biased initial pool, m = {value:g}", ["vaal", "coreset", "random"]
        config.protocol.initial_kind, config.protocol.missing_classes = "biased", int(value)
    return config


def fig6() -> ExperimentConfig:
    """Appendix Fig. 6: a ResNet-18 task model on CIFAR-100 (the CIFAR variant, as LL4AL/TA-VAAL use);
    its VGG16 counterpart is fig2_cifar100."""
    config = fig2("cifar100")
    config.title, config.source = "VAAL Fig. 6: ResNet-18 task model on CIFAR-100", "VAAL Fig. 6 (appendix)"
    config.methods, config.model = ["vaal", "coreset"], ModelConfig(arch="resnet18_cifar")
    return config


def ablation() -> ExperimentConfig:
    """The Fig. 4 ablation methods (Sec. 5.1) on classification: D on pixels, frozen VAE + D, VAE + Eq. 5."""
    config = fig2("cifar10")
    config.title, config.source = "VAAL Fig. 4 ablations on CIFAR-10", "VAAL Sec. 5.1 (methods); Fig. 2 protocol"
    config.methods = list(VAAL_FAMILY) + ["random"]
    return config


def code_2020_profile(dataset: str) -> dict:
    """The official code at 67263f3 (2020-02-21): task SGD 0.01 / wd 5e-4, batch 128, T = 50,000 x 100 // 128 =
    39,062 iterations, divided by 10 before every iteration whose index is a positive multiple of T // 4 = 9,765
    (9,765, 19,530, 29,295 and 39,060: a fourth decay for the last two iterations); torchvision init, 3-layer D,
    scoring as the official sampler (VAE in train mode, shuffled flipped batches of 128). The differences that
    remain are listed in vaal/README.md."""
    iterations = dataset_spec(dataset).train_size * 100 // 128
    overrides = {"train.optimizer": "sgd", "train.lr": 0.01, "train.weight_decay": 5e-4, "train.schedule": "multistep",
                 "train.milestones": [k * (iterations // 4) for k in range(1, iterations // (iterations // 4) + 1)],
                 "train.gamma": 0.1, "train.batch_size": 128, "train.iterations": iterations,
                 "model.init": "torchvision"}
    for name in VAAL_FAMILY:
        overrides[f"method_options.{name}.disc_layers"] = 3
        overrides[f"method_options.{name}.sample_in_train_mode"] = True
    return overrides


def health_check() -> ExperimentConfig:
    """The VAAL health check (vaal/README.md): the labeled set holds half the classes (VAAL Sec. 5.2's biased
    initial pool with m = 5 of CIFAR-10's 10 classes), the unlabeled pool all of them, so a working game must tell
    them apart. Each selection logs D's AUC (labeled vs unlabeled), the share of the held-out classes among the
    `budget` lowest D(mu) against their base rate, the mean |mu| and the reconstruction error, scored with the VAE
    in eval mode (V9) and in train mode (the official sampler). `vaal_frozen_vae` (D on an untrained VAE) is the
    reference: what the discriminator finds without the game. Otherwise Fig. 2's CIFAR-10 protocol."""
    config = fig2("cifar10")
    config.title = "VAAL health check: a labeled set with half the classes"
    config.source = "issue 9; the biased initial pool of VAAL Sec. 5.2, Fig. 2 CIFAR-10 protocol"
    config.methods = ["vaal", "vaal_frozen_vae"]     # the frozen, untrained VAE: what D finds without the game
    config.protocol.cycles, config.protocol.initial_kind, config.protocol.missing_classes = 3, "biased", 5
    config.data.validation_size, config.train.select_on_validation = 0, False    # the check uses no task model
    options = vaal_options("cifar10", health_check=True)
    config.method_options = {name: options[name] for name in config.methods}
    return config


# CPU minutes (per seed, about 1 min of one idle core for vaal and 25 s for vaal_frozen_vae: 7 min for the 5
# seeds): 5,000 images, one selection of 250 after a 120-iteration game of the 1/8-width VAE; the task model,
# which the check does not use, trains 20 iterations
HEALTH_CPU = mini_profile(**{"data.train_subset": 5000, "protocol.initial": 1000, "protocol.budget": 250,
                             "protocol.cycles": 2, "seeds": 5, "train.iterations": 20,
                             "method_options.vaal.iterations": 120,
                             "method_options.vaal_frozen_vae.iterations": 120})
SMALL_SMOKE = smoke_profile(**{"data.validation_size": 50, "train.iterations": 4, "train.validate_every": 2})
SMALL_MINI = mini_profile(**{"data.validation_size": 1000, "protocol.cycles": 4, "train.iterations": 400,
                             "train.validate_every": 100})
LARGE_SMOKE = smoke_profile(**{"data.train_subset": 0, "data.validation_size": 20, "data.test_size": 40,
                               "data.image_size": 40, "data.resize": 44, "data.workers": 0,
                               "protocol.initial": 40, "protocol.budget": 20, "train.iterations": 2,
                               "train.validate_every": 1, "train.batch_size": 16})


def register_all() -> None:
    def small(dataset: str) -> dict:
        return {"smoke": SMALL_SMOKE, "mini": SMALL_MINI, "code_2020": code_2020_profile(dataset)}

    for dataset in ("cifar10", "cifar100"):
        register_experiment(Experiment("vaal", f"fig2_{dataset}", lambda d=dataset: fig2(d), small(dataset)))
    register_experiment(Experiment("vaal", "fig2_caltech256", lambda: fig2("caltech256"), {"smoke": LARGE_SMOKE}))
    register_experiment(Experiment("vaal", "fig2_imagenet", lambda: fig2("imagenet"), {"smoke": LARGE_SMOKE}))
    for noise in (0.1, 0.2, 0.3):
        register_experiment(Experiment("vaal", f"fig5_noise{round(noise * 100)}", lambda n=noise: fig5("noise", n),
                            small("cifar100")))
    for budget in (0.05, 0.10):
        register_experiment(Experiment("vaal", f"fig5_budget{round(budget * 100)}", lambda b=budget: fig5("budget", b),
                            small("cifar100")))
    for missing in (10, 20):
        register_experiment(Experiment("vaal", f"fig5_biased_m{missing}", lambda m=missing: fig5("biased", m),
                            small("cifar100")))
    register_experiment(Experiment("vaal", "fig6_resnet18_cifar100", fig6, small("cifar100")))
    register_experiment(Experiment("vaal", "ablation_cifar10", ablation, small("cifar10")))
    register_experiment(Experiment("vaal", "health_check", health_check,
                        {"smoke": SMALL_SMOKE, "cpu": HEALTH_CPU, "mini": SMALL_MINI}))


register_all()
