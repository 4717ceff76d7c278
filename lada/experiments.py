"""LADA's experiments: the four scenarios of supplement Table 1 (main-paper CIFAR-10 figure, supplement Fig. 1
for Fashion-MNIST, SVHN and CIFAR-100, Fig. 2 from their logged tau*, Figs. 6-8 from their queried pairs,
Table 4 from their timings) and the larger-data setting of Sec. B.3 (Fig. 3, Table 5). Paper-vs-code decisions:
REFERENCES.md sections 2 (L1-L9) and 6; alternatives are the options listed in lada/README.md."""
from functools import partial
from typing import NamedTuple

from core.lib import (DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, mini_profile,
                      register_experiments, smoke_profile)


class Table1(NamedTuple):
    """A scenario of supplement Table 1."""
    initial: int        # labels at the start, balanced over the classes
    b: int              # the budget per acquisition
    tau: float          # fixed tau between feature maps
    input_tau: float    # fixed tau at the input level
    num_lambda: int     # N, the mixing-ratio draws


class Table5(NamedTuple):
    """A setting of Sec. B.3 (Fig. 3, Table 5)."""
    initial: int
    budget: int
    models: int         # trained models: the initial one and one per acquisition, to 10k / 20k labels


TABLE1 = {
    "fashion_mnist": Table1(20, 10, 2.0, 0.2, 10),
    "svhn": Table1(20, 10, 2.0, 0.2, 1),
    "cifar10": Table1(20, 10, 2.0, 0.2, 10),
    "cifar100": Table1(1000, 100, 2.0, 0.2, 5),
}
ACQUISITIONS = 100
SUBSET = 2000                    # random candidates per acquisition, paired (i, i + 1,000) (supplement A.2)
BATCH = {"fashion_mnist": 10, "svhn": 10, "cifar10": 10, "cifar100": 100}      # supplement A.3
# Normalisation and augmentation of the code (REFERENCES 1.3): FMNIST Normalize(0.1307, 0.3081) ~ its own stats,
# SVHN Normalize(0.5), CIFAR the codes' CIFAR-10 statistics with RandomCrop(32, 4) and horizontal flips.
DATA = {
    "fashion_mnist": dict(normalization="dataset", hflip=False, crop_padding=0),
    "svhn": dict(normalization="half", hflip=False, crop_padding=0),
    "cifar10": dict(normalization="cifar10_code", hflip=True, crop_padding=4),
    "cifar100": dict(normalization="cifar10_code", hflip=True, crop_padding=4),
}
TABLE1_METHODS = ["lada", "lada_fixed", "vanilla_mixup", "ada_mixup", "lada_stn", "entropy", "random"]
LADA_MANIFOLD = ("lada", "lada_fixed", "vanilla_mixup")
TABLE5_METHODS = ["vaal", "lada_fixed_vaalmix", "lada_vaalmix", "learning_loss", "lada_fixed_ll4almix",
                  "lada_ll4almix"]
TABLE5 = {"cifar10": Table5(1000, 1000, 10), "cifar100": Table5(5000, 2500, 7)}


def lada_options(dataset: str, methods) -> dict:
    """Table 1's numLambda (L1) and fixed tau (2.0 between feature maps, 0.2 between pixels) for every LADA
    variant among `methods`; AdaMixup's policy generator and intrusion discriminator train only where the code
    trains them, on CIFAR-100 (L5)."""
    row = TABLE1[dataset]
    options = {}
    for method in methods:
        if method in LADA_MANIFOLD:
            options[method] = {"num_lambda": row.num_lambda, "fixed_tau": row.tau}
        elif method.endswith("mix"):
            options[method] = {"num_lambda": row.num_lambda, "fixed_tau": row.input_tau}
        elif method == "ada_mixup":
            options[method] = {"train_policy_and_discriminator": dataset == "cifar100"}
    return options


def train_config(dataset: str) -> TrainConfig:
    """Adam 1e-3, betas (0.9, 0.999), no weight decay, no schedule, 50 epochs per acquisition (supplement A.3).
    Warm start across acquisitions with the one Adam the code builds before the first training, except
    CIFAR-100, where the code reloads the same initial weights and builds a new Adam before every
    acquisition's training (L5)."""
    warm = dataset != "cifar100"
    return TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=BATCH[dataset], epochs=50,
                       reinit=not warm, init_seed="cycle" if warm else "seed", keep_optimizer=warm,
                       eval_batch_size=500)


def table1(dataset: str) -> ExperimentConfig:
    row = TABLE1[dataset]
    return ExperimentConfig(
        title=f"LADA on {dataset}: {row.initial} balanced labels + {row.b} x {ACQUISITIONS} acquisitions",
        source="LADA supplement Table 1, Sec. A.2-A.3 (Fig. 1, Fig. 2, Figs. 6-8, Table 4)",
        methods=list(TABLE1_METHODS), seeds=5,
        data=DataConfig(dataset=dataset, **DATA[dataset]),
        protocol=ProtocolConfig(initial=row.initial, budget=row.b, cycles=ACQUISITIONS + 1, subset=SUBSET,
                                initial_kind="balanced"),
        model=ModelConfig(arch="resnet18_cifar"),
        train=train_config(dataset),
        method_options=lada_options(dataset, TABLE1_METHODS))


def table5(dataset: str) -> ExperimentConfig:
    """Sec. B.3: LL4AL's setting, 50 epochs of Adam 1e-3 after each acquisition. The candidate subset is LL4AL's
    10,000 (2,000 cannot hold CIFAR-100's budget of 2,500); VAAL and LL4AL keep their defaults (L7: unverified)."""
    row = TABLE5[dataset]
    return ExperimentConfig(
        title=f"LADA with VAAL and LL4AL on {dataset}: {row.initial} + {row.budget} to "
              f"{row.initial + row.budget * (row.models - 1)}",
        source="LADA supplement Sec. B.3, Fig. 3, Table 5; Eq. 6-7",
        methods=list(TABLE5_METHODS), seeds=5,
        data=DataConfig(dataset=dataset, **DATA[dataset]),
        protocol=ProtocolConfig(initial=row.initial, budget=row.budget, cycles=row.models, subset=10000),
        model=ModelConfig(arch="resnet18_cifar"),
        train=train_config(dataset),
        method_options=lada_options(dataset, TABLE5_METHODS))


def short_generators(methods) -> dict:
    """Smoke runs: 2 epochs for the policy generator and the STN's tau* search."""
    return {f"method_options.{m}.{'stn' if m == 'lada_stn' else 'generator'}_epochs": 2
            for m in methods if m.startswith("lada")}


SMOKE_SMALL = smoke_profile(**{"protocol.subset": 60, "train.epochs": 2, **short_generators(TABLE1_METHODS)})
SMOKE_CIFAR100 = smoke_profile(**{"protocol.initial": 100, "protocol.budget": 20, "protocol.subset": 100,
                                  "train.epochs": 2, **short_generators(TABLE1_METHODS)})
SMOKE_TABLE5 = smoke_profile(**{"protocol.initial": 40, "protocol.budget": 20, "protocol.subset": 60,
                                "train.epochs": 2, "train.batch_size": 20, **short_generators(TABLE5_METHODS)})
# The mini profiles run on a shared 2-core CPU: 5 acquisitions, 200 candidates (100 pairs) and a 1/16-width
# ResNet; the per-acquisition algorithm (50 epochs, batch 10, generator, numLambda) is the paper's.
MINI_SMALL = mini_profile(**{"data.train_subset": 0, "data.test_subset": 2000, "model.width": 0.0625,
                             "protocol.cycles": 6, "protocol.subset": 200})
MINI_CIFAR100 = mini_profile(**{"protocol.initial": 1000, "protocol.cycles": 4, "protocol.subset": 400,
                                "train.epochs": 20})
MINI_TABLE5 = mini_profile(**{"protocol.initial": 500, "protocol.budget": 500, "protocol.cycles": 4,
                              "protocol.subset": 2000, "train.epochs": 10, "train.batch_size": 50})


EXPERIMENTS = (
    ("table1_fashion_mnist", partial(table1, "fashion_mnist"), {"smoke": SMOKE_SMALL, "mini": MINI_SMALL}),
    ("table1_svhn", partial(table1, "svhn"), {"smoke": SMOKE_SMALL, "mini": MINI_SMALL}),
    ("table1_cifar10", partial(table1, "cifar10"), {"smoke": SMOKE_SMALL, "mini": MINI_SMALL}),
    ("table1_cifar100", partial(table1, "cifar100"), {"smoke": SMOKE_CIFAR100, "mini": MINI_CIFAR100}),
    ("table5_cifar10", partial(table5, "cifar10"), {"smoke": SMOKE_TABLE5, "mini": MINI_TABLE5}),
    ("table5_cifar100", partial(table5, "cifar100"), {"smoke": SMOKE_TABLE5, "mini": MINI_TABLE5}),
)
register_experiments("lada", EXPERIMENTS)
