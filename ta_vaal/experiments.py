"""Every figure of the TA-VAAL supplement (and the main-paper settings it describes), with hyperparameters from
supplement Table 1 and the protocol of the code at 1161071 (REFERENCES 1.2; decisions T1-T13, listed in
ta_vaal/README.md). One registered experiment per figure; main Fig. 3 (improvement over random) and supp.
Fig. 7 (sampled images) are drawn from the runs of supp. Fig. 5a-b and Fig. 6a by ta_vaal/figures.py."""
from functools import partial
from typing import NamedTuple

from baselines.experiments import ll4al
from core.lib import (DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, mini_profile,
                      register_experiments, smoke_profile)
from segmentation.recipe import segmentation_config, smoke as segmentation_smoke


class Table1(NamedTuple):
    """A row of supplement Table 1."""
    d: int              # the VAE's latent dimension
    zeta1: float        # the task model's learning rate
    zeta2: float        # the VAE's learning rate
    zeta3: float        # the discriminator's learning rate
    eta: float          # the ranking loss's weight
    lambda_: float      # the weight of the VAE's adversarial term (the code's adversary_param)
    beta: float         # the KL term's weight
    batch: int
    epochs: int
    initial: int
    budget: int
    image_size: int


METHODS = ["random", "mc_dropout", "coreset", "learning_loss", "vaal", "vaal_in_ta_vaal", "ta_vaal"]
GAMES = ("ta_vaal", "vaal_in_ta_vaal", "ta_vaal_independent", "vaal_in_ta_vaal_lpm")   # methods with a game
TABLE1 = {
    "cifar10": Table1(64, 1e-1, 5e-4, 5e-4, 1.0, 1.0, 1.0, 128, 200, 1000, 1000, 32),
    "cifar100": Table1(64, 1e-1, 5e-4, 5e-4, 1.0, 1.0, 1.0, 128, 200, 2000, 2000, 32),
    "caltech101": Table1(128, 1e-2, 1e-4, 1e-4, 0.2, 15.0, 1.0, 16, 200, 1000, 500, 224),
    "caltech256": Table1(128, 5e-4, 5e-4, 5e-4, 0.1, 15.0, 1.0, 64, 100, 3060, 1530, 224),
    "cityscapes": Table1(128, 1e-3, 1e-4, 1e-4, 0.1, 25.0, 1.0, 4, 100, 200, 200, 412),
}
SUBSET = 10000            # M: the random unlabeled subset scored per cycle (the code's SUBSET)


def ta_options(dataset: str) -> dict:
    """Table 1's row for the two games and, for eta, the learning-loss baseline (the code shares one weight)."""
    row = TABLE1[dataset]
    game = {"latent_dim": row.d, "vae_lr": row.zeta2, "disc_lr": row.zeta3, "lambda2": row.lambda_, "beta": row.beta,
            "vae_epochs": 100}
    return {"ta_vaal": {**game, "weight": row.eta}, "vaal_in_ta_vaal": dict(game),
            "learning_loss": {"weight": row.eta}}


def task_training(dataset: str) -> TrainConfig:
    """SGD, momentum 0.9, wd 5e-4, the learning rate divided by 10 after 80% of the epochs (epoch 160 of 200,
    the code's MultiStepLR [160, 240], T11), the last epoch's model tested (no validation split); the last
    partial batch dropped in the first cycle only (the code's first loader, T13: 7 steps per epoch at 1,000)."""
    row = TABLE1[dataset]
    return TrainConfig(optimizer="sgd", lr=row.zeta1, momentum=0.9, weight_decay=5e-4, batch_size=row.batch,
                       epochs=row.epochs, schedule="multistep", milestones=[row.epochs * 4 // 5],
                       drop_last_first_cycle=True)


def classification(dataset: str, title: str, source: str, data: DataConfig | None = None,
                   step: tuple[int, int] | None = None, cycles: int = 10, methods=METHODS) -> ExperimentConfig:
    """The LL4AL protocol (baselines/experiments.py) with Table 1's row: ResNet-18, a 10,000 subset,
    10 stages, flip + crop(32, 4) and the codes' CIFAR-10 normalisation (also on CIFAR-100, as the code)."""
    row = dataset if dataset in TABLE1 else "cifar10"      # SVHN, Fashion-MNIST: "other settings equal main"
    initial, budget = step or (TABLE1[row].initial, TABLE1[row].budget)
    config = ll4al(dataset, initial)
    config.title, config.source, config.methods = title, source, list(methods)
    config.data = data or DataConfig(dataset=dataset, crop_padding=4, hflip=True, normalization="cifar10_code")
    config.protocol = ProtocolConfig(initial=initial, budget=budget, cycles=cycles, subset=SUBSET)
    config.train = task_training(row)
    config.method_options = ta_options(row)
    return config


def supp_fig5(dataset: str) -> ExperimentConfig:
    """Supp. Fig. 5a-b (absolute accuracy) and main Fig. 3 (improvement over random), 5 trials; Fig. 5c-d:
    SVHN with CIFAR-10's augmentation and normalisation, Fashion-MNIST normalised only (Sec. 4; T8), 1k + 1k."""
    title = f"TA-VAAL supp. Fig. 5 / main Fig. 3: {dataset}"
    source = "TA-VAAL supplement Sec. 4, Fig. 5, Table 1; main Fig. 3"
    if dataset == "svhn":
        data = DataConfig(dataset="svhn", crop_padding=4, hflip=True, normalization="cifar10_code")
        return classification("svhn", title, source, data, (1000, 1000))
    if dataset == "fashion_mnist":
        data = DataConfig(dataset="fashion_mnist", crop_padding=0, hflip=False, normalization="dataset")
        return classification("fashion_mnist", title, source, data, (1000, 1000))
    return classification(dataset, title, source)


def supp_fig6_imbalanced(ratio: int) -> ExperimentConfig:
    """Supp. Fig. 6a-b: CIFAR-10 whose odd classes keep 1/ratio of their training images (the code's cifar10im
    at x100: 5,000 and 50 alternately); balanced test set."""
    config = classification("cifar10", f"TA-VAAL supp. Fig. 6: CIFAR-10 imbalanced x{ratio}",
                            "TA-VAAL supplement Fig. 6a-b; code cifar10im")
    config.data.imbalance = ratio
    return config


def supp_fig6_caltech101() -> ExperimentConfig:
    """Supp. Fig. 6c / Table 1 row: 1,000 + 500, 224 crops of 256 resizes, torchvision's ResNet-18 layout;
    a per-seed test split of 1,735 images (20%; Caltech-101 has none)."""
    data = DataConfig(dataset="caltech101", test_size=1735, hflip=True, image_size=224, resize=256)
    config = classification("caltech101", "TA-VAAL supp. Fig. 6c: Caltech-101", "TA-VAAL supplement Fig. 6c, "
                            "Table 1", data)
    config.model = ModelConfig(arch="resnet18")
    return config


def supp_fig6_cityscapes() -> ExperimentConfig:
    """Supp. Fig. 6d: Cityscapes 200 + 200, random 412 crops, the DRN-D-22 of the segmentation package,
    Table 1's row (SGD 1e-3, batch 4, 100 epochs); the last epoch's model is tested on the official val."""
    config = segmentation_config("cityscapes", 2975, 0, 200, 200, METHODS, "TA-VAAL supp. Fig. 6d: Cityscapes",
                                 "TA-VAAL supplement Fig. 6d, Table 1; segmentation package", crop=412)
    config.train = task_training("cityscapes")
    config.train.amp, config.train.eval_batch_size = True, 4
    config.protocol.subset = SUBSET
    config.method_options = ta_options("cityscapes")
    return config


def supp_fig3(dataset: str) -> ExperimentConfig:
    """Supp. Fig. 3 (Sec. 5): VAAL's sizes, 5,000 + 2,500 to 20,000 (40%), otherwise the main protocol."""
    return classification(dataset, f"TA-VAAL supp. Fig. 3: {dataset}, VAAL budget 5,000 / 2,500",
                          "TA-VAAL supplement Sec. 5, Fig. 3", step=(5000, 2500), cycles=7)


def supp_fig4_caltech256() -> ExperimentConfig:
    """Supp. Fig. 4 (Sec. 6): Caltech-256 with VGG16-BN (torchvision init), 3,060 + 1,530 (VAAL's sizes, to
    40% in 7 stages), Table 1's row, the per-seed test split of VAAL's Fig. 2 (2,560 images)."""
    data = DataConfig(dataset="caltech256", test_size=2560, hflip=True, image_size=224, resize=256)
    config = classification("caltech256", "TA-VAAL supp. Fig. 4: Caltech-256, VGG16",
                            "TA-VAAL supplement Sec. 6, Fig. 4, Table 1", data, cycles=7)
    config.model = ModelConfig(arch="vgg16_bn", init="torchvision")
    return config


def supp_fig1() -> ExperimentConfig:
    """Supp. Fig. 1 (Sec. 2): on CIFAR-100, learning loss and TA-VAAL tested with a learner retrained without
    the ranker on each selected set (their `_independent` variants), beside the other methods."""
    config = supp_fig5("cifar100")
    config.title, config.source = "TA-VAAL supp. Fig. 1: independent task learner, CIFAR-100", \
        "TA-VAAL supplement Sec. 2, Fig. 1"
    config.methods = ["random", "mc_dropout", "coreset", "vaal", "vaal_in_ta_vaal", "learning_loss_independent",
                      "ta_vaal_independent"]
    config.method_options["ta_vaal_independent"] = config.method_options["ta_vaal"]
    config.method_options["learning_loss_independent"] = config.method_options["learning_loss"]
    return config


def supp_fig2() -> ExperimentConfig:
    """Supp. Fig. 2 (Sec. 3): the loss-prediction module's loss per epoch, learning loss (margin) vs v2 (BCE),
    on the CIFAR-10 protocol; the curves come from `diagnostics.ranking_loss_per_epoch`."""
    config = supp_fig5("cifar10")
    config.title, config.source = "TA-VAAL supp. Fig. 2: ranking loss per epoch", "TA-VAAL supplement Sec. 3, Fig. 2"
    config.methods, config.method_options = ["learning_loss_v1", "learning_loss_v2"], {}
    return config


def lpm_for_all_methods(config: ExperimentConfig) -> dict:
    """Profile `lpm_for_all_methods` (T1): the code's behaviour, every method with a jointly trained
    loss-prediction module (the `_lpm` variants), so their curves can be compared with the default runs."""
    from ta_vaal.method import LPM_FOR_ALL

    methods = [f"{m}_lpm" if m in LPM_FOR_ALL else m for m in config.methods]
    options = {f"method_options.{m}_lpm": config.method_options[m] for m in LPM_FOR_ALL
               if m in config.methods and m in config.method_options}
    return {"methods": methods, **options}


def game_sizes(**sizes) -> dict:
    return {f"method_options.{game}.{key}": value for game in GAMES for key, value in sizes.items()}


SMOKE = smoke_profile(**{"protocol.initial": 40, "protocol.budget": 40, "protocol.subset": 200, "train.epochs": 2,
                         "train.milestones": [1], **game_sizes(iterations=3)})
MINI = mini_profile(**{"protocol.initial": 500, "protocol.budget": 250, "protocol.cycles": 3,
                       "protocol.subset": 1000, "train.epochs": 10, "train.milestones": [8],
                       **game_sizes(vae_epochs=4)})
LARGE_SMOKE = smoke_profile(**{"data.train_subset": 0, "data.test_size": 40, "data.image_size": 40,
                               "data.resize": 44, "data.workers": 0, "protocol.initial": 40, "protocol.budget": 20,
                               "protocol.subset": 60, "train.epochs": 1, "train.milestones": [], "train.batch_size": 16,
                               **game_sizes(iterations=2)})


def entry(name: str, build, smoke: dict = SMOKE, mini: dict | None = MINI, **variants) -> tuple:
    """A row of the experiment table: the smoke and mini profiles, the code's `lpm_for_all_methods` (T1) and
    `variants`."""
    profiles = {"smoke": smoke, "lpm_for_all_methods": lpm_for_all_methods(build())}
    return name, build, {**profiles, **({"mini": mini} if mini else {}), **variants}


CITYSCAPES_SMOKE = segmentation_smoke(**{"protocol.subset": 20, "train.epochs": 1, "train.iterations": 0,
                                         "train.milestones": [], **game_sizes(iterations=2)})
EXPERIMENTS = (
    entry("supp_fig5a_cifar10", partial(supp_fig5, "cifar10")),
    entry("supp_fig5b_cifar100", partial(supp_fig5, "cifar100")),
    entry("supp_fig5c_svhn", partial(supp_fig5, "svhn")),
    # Fashion-MNIST: d = 64 of the CIFAR-10 row, as "the other experiment setting is equal" (Sec. 4) and T5;
    # profile `code_latent_dim`: the code's d = 28 (`VAE(28, 1, 3)`, `Discriminator(28)`)
    entry("supp_fig5d_fashion_mnist", partial(supp_fig5, "fashion_mnist"), code_latent_dim=game_sizes(latent_dim=28)),
    entry("supp_fig6a_cifar10_imb100", partial(supp_fig6_imbalanced, 100)),
    entry("supp_fig6b_cifar10_imb10", partial(supp_fig6_imbalanced, 10)),
    entry("supp_fig6c_caltech101", supp_fig6_caltech101, LARGE_SMOKE, None),
    entry("supp_fig6d_cityscapes", supp_fig6_cityscapes, CITYSCAPES_SMOKE, None),
    entry("supp_fig3a_cifar10_vaal_budget", partial(supp_fig3, "cifar10")),
    entry("supp_fig3b_cifar100_vaal_budget", partial(supp_fig3, "cifar100")),
    entry("supp_fig4_caltech256", supp_fig4_caltech256, LARGE_SMOKE, None),
    entry("supp_fig1_independent_cifar100", supp_fig1),
    entry("supp_fig2_ranking_loss_cifar10", supp_fig2),
)
register_experiments("ta_vaal", EXPERIMENTS)
