"""`./reproduce.sh describe`: an experiment's resolved config and every network with its parameter count."""
from __future__ import annotations

import json

from core.tools.arguments import add_experiment, resolve_experiment

NAME = "describe"
HELP = "the resolved config and every network with its parameter count"


def add_arguments(parser) -> None:
    add_experiment(parser)
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")


def run(args) -> int:
    from core.lib.config import to_dict
    from core.lib.datasets import dataset_spec
    from core.lib.experiments import method_status
    from core.lib.networks import build_network, parameter_count
    from core.lib.strategy import make_strategy

    _, config = resolve_experiment(args)
    print(json.dumps(to_dict(config), indent=2))
    data = config.data
    spec = dataset_spec(data.dataset)
    classes = spec.classes_for(data.labels)
    task = build_network(config.model.arch, classes, spec.channels, config.model.width,
                         config.model.init)
    print(f"\ntask model {config.model.arch} (width {config.model.width:g}, {classes} classes): "
          f"{parameter_count(task):,} parameters")
    for variant in [v for v in getattr(task, "family", ()) if v != config.model.arch]:
        other = build_network(variant, classes, spec.channels, config.model.width)
        print(f"  alternative model.arch={variant}: {parameter_count(other):,} parameters")
    implemented, pending = method_status(config)
    for method in implemented:
        strategy = make_strategy(method, config.method_options.get(method))
        for name, network in strategy.networks(config, classes).items():
            print(f"{method}: {name}: {parameter_count(network):,} parameters")
    if pending:
        print(f"pending methods (not implemented yet): {', '.join(pending)}")
    return 0
