"""VAAL's Table 2 (datasets and sizes) and Table 3 (hyperparameters), generated from the Fig. 2 and Fig. 3
configs so the code and the documentation cannot disagree (`./reproduce.sh tables vaal`; vaal/README.md embeds
them). Segmentation test sets are the official val sets (V15), hence 1,000 for BDD100K where the paper had 2,000."""
from core.lib import dataset_spec, get_experiment, resolve_count
from vaal.experiments import TRAIN_SIZE

EXPERIMENTS = {"cifar10": "fig2_cifar10", "cifar100": "fig2_cifar100", "caltech256": "fig2_caltech256",
               "imagenet": "fig2_imagenet", "bdd100k": "fig3_bdd100k", "cityscapes": "fig3_cityscapes"}


def _config(dataset: str):
    config = get_experiment("vaal", EXPERIMENTS[dataset]).config()
    return config, config.protocol.fraction_base or TRAIN_SIZE[dataset]


def _lr(value: float) -> str:
    return f"{value:g}"


def table2() -> str:
    lines = ["| Dataset | #Classes | Train + Val | Test | Initially labeled | Budget | Image size |",
             "|---|---|---|---|---|---|---|"]
    for dataset in EXPERIMENTS:
        config, total = _config(dataset)
        validation = config.data.validation_size
        spec = dataset_spec(dataset)
        test = spec.split_sizes(config.data.test_size)[1]
        side = spec.image_size[0] if spec.small_images else config.data.image_size
        lines.append(f"| {dataset} | {spec.classes} | {total - validation} + {validation} | {test} | "
                     f"{resolve_count(config.protocol.initial, total)} | {resolve_count(config.protocol.budget, total)} | "
                     f"{side}x{side} |")
    return "\n".join(lines)


def table3() -> str:
    lines = ["| Experiment | d | alpha1 (VAE) | alpha2 (D) | alpha3 (task) | lambda1 | lambda2 | beta | batch | epochs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in EXPERIMENTS:
        config, total = _config(dataset)
        vaal, train = config.method_options["vaal"], config.train
        epochs = train.iterations * train.batch_size / total
        lines.append(f"| {dataset} | {vaal['latent_dim']} | {_lr(vaal['vae_lr'])} | {_lr(vaal['disc_lr'])} | "
                     f"{_lr(train.lr)} ({train.optimizer}) | {vaal.get('lambda1', 1.0):g} | {vaal['lambda2']:g} | "
                     f"{vaal.get('beta', 1.0):g} | {train.batch_size} | {epochs:.0f} |")
    return "\n".join(lines)


def markdown() -> str:
    return f"Table 2 (datasets)\n\n{table2()}\n\nTable 3 (hyperparameters)\n\n{table3()}\n"
