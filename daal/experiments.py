"""Every DAAL figure (Sec. 4): Fig. 3 (CIFAR-10, CIFAR-100, Cityscapes against the baselines), Fig. 4 (VAAL with
task features and/or RSS), Fig. 5 (the LL variants at three budgets) and Fig. 6 (one discriminator only); and
`no_dpp_cifar10`, this project's ablation of L_DPP (daal/README.md, "Why the scores saturate").

Protocol (Sec. 4.2): 10% initial labels, +5% per cycle to 40%, three runs, no data augmentation. CIFAR: WRN-28-2,
SGD 0.1 divided by 10 after epochs 80 and 120, 150 epochs; DAAL 150 epochs, Adam 5e-4, batch 128, sigma 0.2.
Cityscapes: a DRN, task 50 and DAAL 100 epochs, both Adam 5e-4, trained on whole images, neither cropped nor
flipped (`NO_AUGMENTATION`; VAAL's recipe has 688 crops and flips). Choices the paper leaves open are the DAAL rows
of REFERENCES section 2, listed with their options in daal/README.md.
"""
from functools import partial
from typing import NamedTuple

from core.lib import (DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, mini_profile,
                      register_experiments, smoke_profile)
from segmentation.recipe import segmentation_config, smoke as segmentation_smoke
from vaal.experiments import vaal_options, vaal_segmentation_options


class Setting(NamedTuple):
    """A dataset's settings in Sec. 4.2."""
    task_optimizer: str
    task_lr: float
    task_epochs: int
    milestones: tuple[int, ...]     # the task epochs after which its learning rate is divided by 10
    daal_epochs: int
    daal_lr: float                  # DAAL's Adam
    sigma: float                    # the target mean score of L_LR (Eq. 6)


SETTINGS = {
    "cifar10": Setting("sgd", 0.1, 150, (80, 120), 150, 5e-4, 0.2),
    "cifar100": Setting("sgd", 0.1, 150, (80, 120), 150, 5e-4, 0.2),
    "cityscapes": Setting("adam", 5e-4, 50, (), 100, 5e-4, 0.2),
}
CITYSCAPES_IMAGES = 2975               # the official train split; the official val split (500) is the test set
DATASETS = ("cifar10", "cifar100", "cityscapes")
DAAL_FAMILY = ("daal", "daal_udis", "daal_rdis", "daal_no_dpp", "ll_rd")
VAAL_VARIANTS = ("vaal", "vaal_rss", "vaal_tf", "vaal_tf_rss")
RSS_METHODS = ("learning_loss_rss", "vaal_rss", "vaal_tf_rss", "ll_coreset")

FIG3_METHODS = ["daal", "vaal", "learning_loss_rss", "coreset", "entropy", "random", "full_data"]
FIG3_SEGMENTATION = ["mc_dropout", "suggestive_annotation"]
FIG4_METHODS = ["daal", "vaal", "vaal_tf", "vaal_rss", "vaal_tf_rss", "learning_loss_rss"]
FIG5_METHODS = ["learning_loss_rss", "learning_loss", "ll_rd", "ll_coreset"]
FIG5_BUDGETS = {"cifar10": (250, 1000, 2500), "cifar100": (250, 1000, 2500), "cityscapes": (30, 75, 150)}
FIG6_METHODS = ["daal", "daal_udis", "daal_rdis", "learning_loss_rss", "random"]
NO_DPP_METHODS = ["daal", "daal_no_dpp", "entropy", "random"]
# Sec. 4.2, "we evaluate all methods without any data augmentation": for segmentation, whole images (crop size 0)
# and no flip; CIFAR's configs already set hflip=False and crop_padding=0. To train with VAAL's recipe instead:
# --set data.hflip=true --set data.image_size=688
NO_AUGMENTATION = {"data.hflip": False, "data.image_size": 0}


def method_options(dataset: str, methods: list[str]) -> dict:
    """Sec. 4.2 for the DAAL games; VAAL's own Table 3 row of the dataset for VAAL and its variants."""
    setting = SETTINGS[dataset]
    vaal = vaal_segmentation_options()["vaal"] if dataset == "cityscapes" else vaal_options(dataset)["vaal"]
    options = {}
    for method in methods:
        if method in DAAL_FAMILY:
            options[method] = {"epochs": setting.daal_epochs, "lr": setting.daal_lr, "sigma": setting.sigma}
        elif method in VAAL_VARIANTS:
            options[method] = dict(vaal)
    return options


def classification(dataset: str, methods: list[str], title: str, source: str, budget: float = 0.05
                   ) -> ExperimentConfig:
    setting = SETTINGS[dataset]
    return ExperimentConfig(
        title=title, source=source, methods=list(methods), seeds=3,
        data=DataConfig(dataset=dataset, validation_size=0, hflip=False),
        protocol=ProtocolConfig(initial=0.1, budget=budget, cycles=7, subset=0),
        model=ModelConfig(arch="wrn28_2"),
        train=TrainConfig(optimizer=setting.task_optimizer, lr=setting.task_lr, momentum=0.9, weight_decay=5e-4,
                          batch_size=128, epochs=setting.task_epochs, schedule="multistep",
                          milestones=list(setting.milestones)),
        method_options=method_options(dataset, methods))


def cityscapes(methods: list[str], title: str, source: str, budget: float = 0.05) -> ExperimentConfig:
    """VAAL's segmentation recipe (DRN-D-22 from ImageNet weights, batch 8) with DAAL's schedule: Adam 5e-4 for
    50 epochs on whole images without augmentation (Sec. 4.2), the last model tested, no validation images."""
    config = segmentation_config("cityscapes", CITYSCAPES_IMAGES, 0, 0.1, budget, methods, title, source)
    config.data.hflip, config.data.image_size = NO_AUGMENTATION["data.hflip"], NO_AUGMENTATION["data.image_size"]
    setting = SETTINGS["cityscapes"]
    config.seeds = 3
    config.train = TrainConfig(optimizer=setting.task_optimizer, lr=setting.task_lr, weight_decay=0.0,
                               batch_size=config.train.batch_size, epochs=setting.task_epochs, drop_last=True,
                               amp=True, eval_batch_size=4)
    config.method_options = method_options("cityscapes", methods)
    return config


def build(dataset: str, methods: list[str], title: str, source: str, budget: float = 0.05) -> ExperimentConfig:
    if dataset == "cityscapes":
        return cityscapes(methods, title, source, budget)
    return classification(dataset, methods, title, source, budget)


def fig3(dataset: str) -> ExperimentConfig:
    methods = FIG3_METHODS + (FIG3_SEGMENTATION if dataset == "cityscapes" else [])
    return build(dataset, methods, f"DAAL Fig. 3: {dataset}", "DAAL Fig. 3, Sec. 4.2-4.4")


def fig4(dataset: str) -> ExperimentConfig:
    return build(dataset, FIG4_METHODS, f"DAAL Fig. 4: VAAL with task features and RSS, {dataset}",
                 "DAAL Fig. 4, Sec. 4.5")


def fig5(dataset: str, budget: int) -> ExperimentConfig:
    """Budgets per cycle of Sec. 4.5 from the 10% initial set; the paper gives no cycle count, so six
    acquisitions as in Fig. 3."""
    return build(dataset, FIG5_METHODS, f"DAAL Fig. 5: LL variants, budget {budget}, {dataset}",
                 "DAAL Fig. 5, Sec. 4.5", budget)


def fig6(dataset: str) -> ExperimentConfig:
    return build(dataset, FIG6_METHODS, f"DAAL Fig. 6: one discriminator only, {dataset}", "DAAL Fig. 6, Sec. 4.6")


def no_dpp() -> ExperimentConfig:
    """Not in the paper: DAAL against DAAL without L_DPP (`daal_no_dpp`) on Fig. 3's CIFAR-10 protocol, with
    entropy and random sampling for reference."""
    return build("cifar10", NO_DPP_METHODS, "DAAL with and without L_DPP, cifar10",
                 "this project's ablation of DAAL Eq. 5-7 on the Fig. 3 protocol (daal/README.md)")


def game_sizes(methods: list[str], iterations: int, subset: int) -> dict:
    """The small profiles' game lengths and RSS sizes."""
    sizes = {f"method_options.{m}.iterations": iterations for m in methods if m in DAAL_FAMILY + VAAL_VARIANTS}
    sizes.update({f"method_options.{m}.subset": subset for m in methods if m in RSS_METHODS})
    return sizes


def profiles(config: ExperimentConfig) -> dict:
    """The smoke and mini profiles of an experiment, sized by its dataset, methods and budget."""
    dataset, methods, budget = config.data.dataset, config.methods, config.protocol.budget
    if dataset == "cityscapes":
        # whole images in the smoke profile too (its 32 px crops would be augmentation)
        return {"smoke": segmentation_smoke(**{"protocol.cycles": 2, "train.epochs": 1, **game_sizes(methods, 2, 16),
                                               "data.image_size": NO_AUGMENTATION["data.image_size"]})}
    smoke = smoke_profile(**{"protocol.cycles": 2, "train.epochs": 1, "train.milestones": [1], "protocol.budget": 20,
                             **game_sizes(methods, 3, 200)})
    # the mini run (a quarter of an hour on an idle 2-core CPU for daal, vaal, coreset, random and 2 seeds):
    # 10,000 images, 1,000 + 500 per cycle to 2,000, a quarter-width WRN-28-2 (32-d features, more than the
    # ceil(0.2 x 128) = 26 of a DPP subset) for 4 epochs (decays after 2 and 3, near the paper's 80/150 and
    # 120/150), DAAL games of 300 batches (4 passes over the unlabeled features), VAAL games of 40
    mini = mini_profile(**{"model.width": 0.25, "protocol.cycles": 3, "train.epochs": 4, "train.milestones": [2, 3],
                           "protocol.budget": 500 if budget < 1 else budget, **game_sizes(methods, 300, 5000),
                           **{f"method_options.{m}.iterations": 40 for m in methods if m in VAAL_VARIANTS}})
    return {"smoke": smoke, "mini": mini}


def entry(name: str, build) -> tuple:
    return name, build, profiles(build())


FIGURES = {"fig3": fig3, "fig4": fig4, "fig6": fig6}
EXPERIMENTS = (
    *(entry(f"{figure}_{dataset}", partial(builder, dataset)) for dataset in DATASETS
      for figure, builder in FIGURES.items()),
    *(entry(f"fig5_{dataset}_b{budget}", partial(fig5, dataset, budget)) for dataset in DATASETS
      for budget in FIG5_BUDGETS[dataset]),
    entry("no_dpp_cifar10", no_dpp),
)
register_experiments("daal", EXPERIMENTS)
