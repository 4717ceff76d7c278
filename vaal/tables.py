"""VAAL's Table 2 (datasets and sizes) and Table 3 (hyperparameters), generated from the Fig. 2 configs so
the code and the documentation cannot disagree (`./reproduce.sh tables vaal`; vaal/README.md embeds them)."""
from core.datasets import NUM_CLASSES, TEST_SIZE
from core.experiments import get
from core.loop import resolve_count
from vaal.experiments import TRAIN_SIZE

DATASETS = ("cifar10", "cifar100", "caltech256", "imagenet")


def _lr(value: float) -> str:
    return f"{value:g}"


def table2() -> str:
    lines = ["| Dataset | #Classes | Train + Val | Test | Initially labeled | Budget | Image size |",
             "|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        config = get("vaal", f"fig2_{dataset}").config()
        total, validation = TRAIN_SIZE[dataset], config.data.validation_size
        test = config.data.test_size or TEST_SIZE[dataset]
        side = 32 if dataset.startswith("cifar") else config.data.image_size
        lines.append(f"| {dataset} | {NUM_CLASSES[dataset]} | {total - validation} + {validation} | {test} | "
                     f"{resolve_count(config.protocol.initial, total)} | {resolve_count(config.protocol.budget, total)} | "
                     f"{side}x{side} |")
    return "\n".join(lines)


def table3() -> str:
    lines = ["| Experiment | d | alpha1 (VAE) | alpha2 (D) | alpha3 (task) | lambda1 | lambda2 | beta | batch | epochs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        config = get("vaal", f"fig2_{dataset}").config()
        vaal, train = config.method_options["vaal"], config.train
        epochs = train.iterations * train.batch_size / TRAIN_SIZE[dataset]
        lines.append(f"| {dataset} | {vaal['latent_dim']} | {_lr(vaal['vae_lr'])} | {_lr(vaal['disc_lr'])} | "
                     f"{_lr(train.lr)} ({train.optimizer}) | {vaal.get('lambda1', 1.0):g} | {vaal['lambda2']:g} | "
                     f"{vaal.get('beta', 1.0):g} | {train.batch_size} | {epochs:.0f} |")
    return "\n".join(lines)


def markdown() -> str:
    return f"Table 2 (datasets)\n\n{table2()}\n\nTable 3 (hyperparameters)\n\n{table3()}\n"
