"""The LL4AL protocol (Yoo & Kweon 2019, REFERENCES 1.5) that TA-VAAL and LADA compare against."""
from functools import partial

from core.lib import (DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, mini_profile,
                      register_experiments, smoke_profile)


def ll4al(dataset: str, step: int) -> ExperimentConfig:
    """1k + 1k to 10k on CIFAR-10 (2k + 2k to 20k on CIFAR-100), a random subset of 10,000 scored per cycle,
    ResNet-18, SGD 0.1 / 0.9 / 5e-4, 200 epochs with the decay at 160, batch 128, flip + crop(32, 4).

    The papers do not give the normalisation; the LL4AL, TA-VAAL and LADA codes use the CIFAR-10 mean and the
    std (0.2023, 0.1994, 0.2010), TA-VAAL's also for CIFAR-100 (REFERENCES 1.2, 1.3, 1.5): `cifar10_code`."""
    return ExperimentConfig(
        title=f"LL4AL protocol: {dataset.upper()}", source="LL4AL (Yoo & Kweon 2019) Sec. 4.1; REFERENCES 1.5, B1-B3",
        methods=["random", "entropy", "coreset", "learning_loss"], seeds=5,
        data=DataConfig(dataset=dataset, crop_padding=4, hflip=True, normalization="cifar10_code"),
        protocol=ProtocolConfig(initial=step, budget=step, cycles=10, subset=10000),
        model=ModelConfig(arch="resnet18_cifar"),
        train=TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=200,
                          schedule="multistep", milestones=[160]))


PROFILES = {
    "smoke": smoke_profile(**{"protocol.initial": 40, "protocol.budget": 40, "protocol.subset": 200,
                              "train.epochs": 2, "train.milestones": [1]}),
    "mini": mini_profile(**{"protocol.initial": 1000, "protocol.budget": 500, "protocol.cycles": 5,
                            "protocol.subset": 3000, "train.epochs": 15, "train.milestones": [12]}),
}
# `./reproduce.sh demo`: 3 seeds of 3 methods in about 5 minutes, on a 2-core CPU (`demo`: 5,000 images, 1/8
# width, 500 -> 1,500 labels, 4 epochs of batch 64) or one GPU (`demo_gpu`: the full protocol's first 3 cycles,
# 1,000 -> 3,000 labels, a quarter of its epochs with the decay at the same point, 160/200).
DEMO_PROFILES = {
    "demo": {"data.train_subset": 5000, "data.test_subset": 1000, "model.width": 0.125, "protocol.initial": 500,
             "protocol.budget": 500, "protocol.cycles": 3, "protocol.subset": 2000, "train.epochs": 4,
             "train.milestones": [3], "train.batch_size": 64, "seeds": 3},
    "demo_gpu": {"protocol.cycles": 3, "train.epochs": 50, "train.milestones": [40], "seeds": 3},
}
EXPERIMENTS = (
    ("ll4al_cifar10", partial(ll4al, "cifar10", 1000), {**PROFILES, **DEMO_PROFILES}),
    ("ll4al_cifar100", partial(ll4al, "cifar100", 2000), PROFILES),
)
register_experiments("baselines", EXPERIMENTS)
