"""DAAL's settings (Sec. 4.2), generated from the Fig. 3 configs so the code and the documentation cannot disagree
(`./reproduce.sh tables daal`; daal/README.md embeds the table)."""
from core.lib import dataset_spec, get_experiment, resolve_count
from core.tools.reported import REPORTED
from daal.method import DAAL_OPTIONS

EXPERIMENTS = ("fig3_cifar10", "fig3_cifar100", "fig3_cityscapes")


def augmentation(data) -> str:
    """What the task model's training batches go through: "none" in every DAAL experiment (Sec. 4.2)."""
    crops = data.crop_padding or (not dataset_spec(data.dataset).small_images and data.image_size)
    return ", ".join(name for name, used in (("flips", data.hflip), ("random crops", crops)) if used) or "none"


def settings() -> str:
    lines = ["| Experiment | Task model | Task optimiser | Task epochs (lr decays) | Augmentation | DAAL epochs | "
             "DAAL Adam lr | DAAL batch | sigma | Initial + budget x acquisitions | Runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for experiment in EXPERIMENTS:
        config = get_experiment("daal", experiment).config()
        images = dataset_spec(config.data.dataset).train_size
        train, protocol, daal = config.train, config.protocol, {**DAAL_OPTIONS, **config.method_options["daal"]}
        decays = f" ({', '.join(map(str, train.milestones))})" if train.milestones else ""
        lines.append(f"| {experiment} | {config.model.arch} | {train.optimizer} {train.lr:g} | "
                     f"{train.epochs}{decays} | {augmentation(config.data)} | {daal['epochs']} | {daal['lr']:g} | "
                     f"{daal['batch_size']} | {daal['sigma']:g} | "
                     f"{resolve_count(protocol.initial, images)} + {resolve_count(protocol.budget, images)} x "
                     f"{protocol.cycles - 1} | {config.seeds} |")
    return "\n".join(lines)


def reported() -> str:
    lines = ["| Experiment | Method | Labeled | Reported |", "|---|---|---|---|"]
    for r in REPORTED:
        if r.paper == "daal":
            lines.append(f"| {r.experiment} | {r.method} | {100 * r.fraction:.0f}% | {r.value:.2f} ± {r.std:.2f} |")
    return "\n".join(lines)


def markdown() -> str:
    return f"Settings (Sec. 4.2)\n\n{settings()}\n\nReported numbers (core/tools/reported.py)\n\n{reported()}\n"
