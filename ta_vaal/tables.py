"""Supplement Table 1 (hyperparameters), generated from the experiment configs so code and documentation cannot
disagree (`./reproduce.sh tables ta_vaal`; ta_vaal/README.md embeds it)."""
from core.lib import get_experiment

EXPERIMENTS = {"CIFAR10": "supp_fig5a_cifar10", "CIFAR100": "supp_fig5b_cifar100",
               "Caltech101": "supp_fig6c_caltech101", "Caltech256": "supp_fig4_caltech256",
               "Cityscapes": "supp_fig6d_cityscapes"}


def _value(value: float) -> str:
    return f"{value:g}"


def table1() -> str:
    lines = ["| Dataset | d | zeta1 (task) | zeta2 (VAE) | zeta3 (D) | eta | lambda | beta | batch size | epochs | "
             "Initial / budget | image size |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, name in EXPERIMENTS.items():
        config = get_experiment("ta_vaal", name).config()
        ta, train, protocol = config.method_options["ta_vaal"], config.train, config.protocol
        side = 32 if config.data.dataset.startswith("cifar") else config.data.image_size
        kind = "padded" if config.data.dataset.startswith("cifar") else "cropped"
        lines.append(f"| {label} | {ta['latent_dim']} | {_value(train.lr)} | {_value(ta['vae_lr'])} | "
                     f"{_value(ta['disc_lr'])} | {_value(ta['weight'])} | {_value(ta['lambda2'])} | "
                     f"{_value(ta['beta'])} | {train.batch_size} | {train.epochs} | "
                     f"{protocol.initial:g} / {protocol.budget:g} | {side}x{side} ({kind}) |")
    return "\n".join(lines)


def markdown() -> str:
    return f"Supplement Table 1 (hyperparameters)\n\n{table1()}\n"
