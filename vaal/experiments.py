"""Every figure of VAAL: the classification figures (Fig. 2, 5, 6, and the Fig. 4 ablation methods on CIFAR-10)
and the segmentation figures (Fig. 3 on Cityscapes and BDD100K, Fig. 4 on BDD100K, with the segmentation package's
DRN recipe), with sizes from Table 2 and hyperparameters from Table 3 and Sec. 4.1-4.2; and a CamVid experiment,
the segmentation recipe on the driving data available offline. Paper-vs-code decisions: REFERENCES.md sections 2
(V1-V18) and 6; alternatives are config options listed in vaal/README.md and segmentation/README.md."""
from functools import partial
from typing import NamedTuple

from core.lib import (DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, mini_profile,
                      register_experiments, smoke_profile)
from segmentation.recipe import BATCH, segmentation_config, smoke as segmentation_smoke


class Table2(NamedTuple):
    """A segmentation row of Table 2."""
    images: int         # train + val
    validation: int
    initial: int        # initially labeled
    budget: int


class Table3(NamedTuple):
    """A row of Table 3; lambda1 = beta = 1, 100 epochs, batch 64 (8 for the segmentation rows)."""
    d: int              # the VAE's latent dimension
    alpha1: float       # the VAE's learning rate
    alpha2: float       # the discriminator's learning rate
    lambda2: float      # the weight of the VAE's adversarial term


FIG2_METHODS = ["vaal", "coreset", "ensemble_varratio", "mc_dropout", "entropy", "random", "full_data"]
FIG3_METHODS = ["vaal", "qbc", "coreset", "mc_dropout", "suggestive_annotation", "random", "full_data"]
FIG4_METHODS = ["vaal", "vaal_pixel_disc", "vaal_frozen_vae", "vae_wasserstein", "random", "full_data"]
CAMVID_METHODS = ["vaal", "coreset", "entropy", "mc_dropout", "qbc", "suggestive_annotation", "random", "full_data"]
VAAL_FAMILY = ("vaal", "vaal_pixel_disc", "vaal_frozen_vae", "vae_wasserstein")
TABLE2 = {"cityscapes": Table2(2675 + 300, 300, 300, 150), "bdd100k": Table2(7000 + 1000, 1000, 800, 400)}
TABLE3 = {
    "cifar10": Table3(32, 5e-4, 5e-4, 1.0), "cifar100": Table3(32, 5e-4, 5e-4, 1.0),
    "caltech256": Table3(64, 5e-4, 5e-4, 10.0), "imagenet": Table3(64, 1e-3, 1e-3, 10.0),
    "bdd100k": Table3(128, 1e-3, 1e-3, 25.0), "cityscapes": Table3(128, 1e-3, 1e-3, 25.0),
}
# N of V3 as the paper counts its images (Table 2, train + val); Caltech-256's 30,607 include 257.clutter's 827,
# which the loader drops (core.lib.datasets: 29,780), so the loaded split and the iteration count differ apart
TRAIN_SIZE = {"cifar10": 50000, "cifar100": 50000, "caltech256": 27607 + 3000, "imagenet": 1153047 + 128120}


def vaal_options(dataset: str, **extra) -> dict:
    """Table 3's row of `dataset` for VAAL and its ablations, plus `extra` options."""
    row = TABLE3[dataset]
    options = {"latent_dim": row.d, "vae_lr": row.alpha1, "disc_lr": row.alpha2, "lambda2": row.lambda2, **extra}
    return {name: dict(options) for name in VAAL_FAMILY}


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
        model=ModelConfig(arch="vgg16_bn", init="xavier"),
        train=vaal_task_training(TRAIN_SIZE[dataset]), method_options=vaal_options(dataset))
    if dataset == "caltech256":
        config.data = DataConfig(dataset="caltech256", validation_size=3000, test_size=2560, hflip=True,
                                 image_size=224, resize=256)
        config.protocol = ProtocolConfig(initial=3060, budget=1530, cycles=7)
    if dataset == "imagenet":
        # 10% to 30%, 2 runs (Sec. 4.1); the task learning rate 0.1 (V11) with SGD: Adam diverges at 0.1
        config.seeds = 2
        config.data = DataConfig(dataset="imagenet", validation_size=128120, hflip=True, image_size=224, resize=256)
        config.protocol = ProtocolConfig(initial=128120, budget=64060, cycles=5)
        config.train = vaal_task_training(TRAIN_SIZE[dataset], lr=0.1, optimizer="sgd")
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


def vaal_segmentation_options() -> dict:
    """Table 3, Cityscapes and BDD100K rows (identical): d = 128, alpha1 = alpha2 = 1e-3, lambda2 = 25, batch 8;
    the VAE sees 64 x 64 resizes of the crops (V13)."""
    return vaal_options("cityscapes", batch_size=BATCH, large_image_size=64)


def segmentation(dataset: str, sizes: Table2, methods: list[str], title: str, source: str, **recipe
                 ) -> ExperimentConfig:
    """The segmentation package's recipe (DRN-D-22, Adam 1e-3, batch 8, crops and flips, T = N x 100 / 8
    iterations; V12-V15, B5) with Table 3's segmentation row for VAAL and its ablations."""
    config = segmentation_config(dataset, sizes.images, sizes.validation, sizes.initial, sizes.budget, methods,
                                 title, source, **recipe)
    config.method_options = vaal_segmentation_options()
    return config


def fig3(dataset: str) -> ExperimentConfig:
    """Fig. 3: initial 10%, +5% per cycle to 40% of the train + val images (Table 2), five runs (Sec. 4.1)."""
    return segmentation(dataset, TABLE2[dataset], FIG3_METHODS, f"VAAL Fig. 3: {dataset}",
                        "VAAL Fig. 3, Sec. 4.2; Tables 2-3; REFERENCES V12-V15, B5")


def fig4() -> ExperimentConfig:
    """Fig. 4 (Sec. 5.1): the ablations on BDD100K, protocol of Fig. 3."""
    return segmentation("bdd100k", TABLE2["bdd100k"], FIG4_METHODS, "VAAL Fig. 4: ablations on BDD100K",
                        "VAAL Fig. 4, Sec. 5.1; Fig. 3 protocol")


def camvid() -> ExperimentConfig:
    """Not in the paper: the Fig. 3 recipe on CamVid's 367 training frames: 37 held out for validation, 37 initial
    (10%), +18 (5%) to 40%; crops of 352 (the frames are 360 x 480); tested on the 233 test frames."""
    return segmentation("camvid", Table2(367, 37, 37, 18), CAMVID_METHODS, "CamVid: the VAAL segmentation recipe",
                        "VAAL Sec. 4.2 recipe on CamVid", crop=352)


def code_2020_profile(dataset: str) -> dict:
    """The official code at 67263f3 (2020-02-21): task SGD 0.01 / wd 5e-4, batch 128, T = 50,000 x 100 // 128 =
    39,062 iterations, divided by 10 before every iteration whose index is a positive multiple of T // 4 = 9,765
    (9,765, 19,530, 29,295 and 39,060: a fourth decay for the last two iterations); torchvision init, 3-layer D,
    scoring as the official sampler (VAE in train mode, shuffled flipped batches of 128). The differences that
    remain are listed in vaal/README.md."""
    iterations = TRAIN_SIZE[dataset] * 100 // 128
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


CAMVID_MINI = {
    # CPU minutes: frames scaled to 120 x 160, 112 px crops, a quarter-width DRN-D-22 trained from scratch for
    # 800 iterations (fewer leave every labeled-set size at the same undertrained mIoU); a 300-iteration VAAL game
    "data.resize": 120, "data.image_size": 112, "data.workers": 0,
    "model.width": 0.25, "model.pretrained": "", "seeds": 1,
    "protocol.cycles": 4, "protocol.initial": 20, "protocol.budget": 40, "protocol.fraction_base": 0,
    "train.iterations": 800, "train.validate_every": 200, "train.eval_batch_size": 20,
    **{f"method_options.{name}.iterations": 300 for name in VAAL_FAMILY},
}


def small(dataset: str) -> dict:
    return {"smoke": SMALL_SMOKE, "mini": SMALL_MINI, "code_2020": code_2020_profile(dataset)}


EXPERIMENTS = (   # name, build, profiles
    ("fig2_cifar10", partial(fig2, "cifar10"), small("cifar10")),
    ("fig2_cifar100", partial(fig2, "cifar100"), small("cifar100")),
    ("fig2_caltech256", partial(fig2, "caltech256"), {"smoke": LARGE_SMOKE}),
    ("fig2_imagenet", partial(fig2, "imagenet"), {"smoke": LARGE_SMOKE}),
    ("fig3_cityscapes", partial(fig3, "cityscapes"), {"smoke": segmentation_smoke()}),
    ("fig3_bdd100k", partial(fig3, "bdd100k"), {"smoke": segmentation_smoke()}),
    ("fig4_bdd100k", fig4, {"smoke": segmentation_smoke()}),
    ("fig5_noise10", partial(fig5, "noise", 0.1), small("cifar100")),
    ("fig5_noise20", partial(fig5, "noise", 0.2), small("cifar100")),
    ("fig5_noise30", partial(fig5, "noise", 0.3), small("cifar100")),
    ("fig5_budget5", partial(fig5, "budget", 0.05), small("cifar100")),
    ("fig5_budget10", partial(fig5, "budget", 0.10), small("cifar100")),
    ("fig5_biased_m10", partial(fig5, "biased", 10), small("cifar100")),
    ("fig5_biased_m20", partial(fig5, "biased", 20), small("cifar100")),
    ("fig6_resnet18_cifar100", fig6, small("cifar100")),
    ("ablation_cifar10", ablation, small("cifar10")),
    ("health_check", health_check, {"smoke": SMALL_SMOKE, "cpu": HEALTH_CPU, "mini": SMALL_MINI}),
)
register_experiments("vaal", EXPERIMENTS)
# CamVid is in no paper, hence under the segmentation package's name; VAAL's segmentation recipe is what it runs
register_experiments("segmentation", [("camvid", camvid, {"smoke": segmentation_smoke(), "mini": CAMVID_MINI})])
