"""`./reproduce.sh list`: every paper, experiment, method and reported number, with its status."""
from __future__ import annotations

NAME = "list"
HELP = "every paper, experiment, method and reported number, with status"


def add_arguments(parser) -> None:
    """list takes no arguments."""


def run(args) -> int:
    from core.lib import experiments
    from core.lib.strategy import STRATEGIES
    from core.tools.reported import REPORTED

    papers = experiments.papers()
    print("methods implemented: " + ", ".join(sorted(STRATEGIES)))
    for paper in papers:
        print(f"\n{paper}")
        for (p, name), experiment in sorted(experiments.EXPERIMENTS.items()):
            if p != paper:
                continue
            config = experiment.config("paper")
            implemented, pending = experiments.method_status(config)
            reported = sum(r.paper == paper and r.experiment == name for r in REPORTED)
            status = "runnable" if implemented and not pending else ("partial" if implemented else "pending")
            print(f"  {name:<22} [{status}] {config.title} ({config.source})")
            extras = [m for m in implemented if m in config.extra_methods]
            print(f"  {'':<22} methods: {', '.join(m for m in implemented if m not in extras) or '-'}"
                  + (f"; pending: {', '.join(pending)}" if pending else "")
                  + (f"; beyond the paper: {', '.join(extras)}" if extras else ""))
            print(f"  {'':<22} profiles: paper, {', '.join(experiment.profiles)}; reported numbers: {reported}")
    awaiting = sorted({(r.paper, r.experiment) for r in REPORTED} - set(experiments.EXPERIMENTS))
    print("\nfigures and tables with reported numbers, not implemented yet [pending]:")
    for paper, name in awaiting:
        print(f"  {paper}/{name}: {sum(r.paper == paper and r.experiment == name for r in REPORTED)} reported numbers")
    return 0
