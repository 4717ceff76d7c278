"""Command line behind ./reproduce.sh: list, run, report, describe, compare, bench, demo."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import UserError

REPO = Path(__file__).resolve().parent.parent
DEMO = {"paper": "baselines", "experiment": "ll4al_cifar10", "methods": "random,coreset,vaal", "seeds": 1,
        "profile": "mini", "out": "results/demo"}


def pick_device(name: str | None):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def resolve_experiment(args):
    from core import experiments
    from core.config import parse_assignments

    experiment = experiments.get(args.paper, args.experiment)
    overrides = parse_assignments(args.set or [])
    if getattr(args, "pretrained", None) is not None:
        overrides["model.pretrained"] = args.pretrained
    return experiment, experiment.config(args.profile, overrides)


def choose_methods(config, requested: str | None) -> list[str]:
    from core.experiments import method_status

    implemented, pending = method_status(config)
    if not requested:
        if not implemented:
            raise UserError(f"no method of {config.paper}/{config.experiment} is implemented yet "
                            f"(pending: {', '.join(pending)})")
        return implemented
    methods = [m.strip() for m in requested.split(",") if m.strip()]
    from core.strategy import STRATEGIES

    unknown = [m for m in methods if m not in STRATEGIES]
    if unknown:
        raise UserError(f"unknown or unimplemented method(s) {', '.join(unknown)}; implemented: "
                        f"{', '.join(sorted(STRATEGIES))}")
    return methods


def command_run(args) -> int:
    from tqdm.auto import tqdm

    from core.datasets import resolve_data_root
    from core.loop import RunSettings, run_job
    from core.report import write_report

    _, config = resolve_experiment(args)
    methods = choose_methods(config, args.methods)
    seeds = range(args.seeds if args.seeds is not None else config.seeds)
    data_root, device = resolve_data_root(args.data_root), pick_device(args.device)
    out = Path(args.out)
    new_cycles: list[dict] = []
    from core.strategy import STRATEGIES

    total = len(seeds) * sum(1 if STRATEGIES[m].single_cycle else config.protocol.cycles for m in methods)
    overall = tqdm(total=total, desc=f"{config.paper}/{config.experiment}", unit="cycle", disable=args.quiet)

    def finished_cycle(row):
        overall.update()
        new_cycles.append(row)
        overall.write(f"{row['method']} seed {row['seed']} cycle {row['cycle']}: {row['n_labeled']} labels "
                      f"({100 * row['fraction_labeled']:.1f}%) -> {row['metric']} {row['value']:.2f} "
                      f"(train {row['train_seconds']:.0f} s, select {row['select_seconds']:.1f} s)")

    settings = RunSettings(data_root, out, device, args.profile,
                           args.download, progress=not args.quiet, on_cycle=finished_cycle)
    for method in methods:
        for seed in seeds:
            new_cycles.clear()
            rows = run_job(config, method, seed, settings)
            overall.update(len(rows) - len(new_cycles))
    overall.close()
    written = write_report(out / config.paper / config.experiment)
    print(f"results: {out / config.paper / config.experiment}; report: {written[-1]}")
    return 0


def command_report(args) -> int:
    from core.report import Stats, write_report

    stats = Stats(args.test, args.alpha)
    for path in write_report([Path(r) for r in args.results], args.out and Path(args.out), args.x_axis, stats):
        print(path)
    return 0


def command_compare(args) -> int:
    from core.reported import compare, comparison_table
    from core.results import load_rows, write_atomic

    comparisons, uncovered = compare(load_rows(Path(args.results)))
    if not comparisons:
        print("no paper-profile results match a reported number (mini/smoke runs are never compared); "
              "run with --profile paper")
        return 0
    table = comparison_table(comparisons)
    write_atomic(Path(args.results) / "compare.md", table)
    print(table + (f"\n{uncovered} paper-profile rows have no reported number to compare with." if uncovered else ""))
    return 0


def command_describe(args) -> int:
    from core.config import to_dict
    from core.datasets import NUM_CLASSES, input_channels
    from core.experiments import method_status
    from core.networks import build_network, parameter_count
    from core.strategy import make_strategy

    _, config = resolve_experiment(args)
    print(json.dumps(to_dict(config), indent=2))
    data = config.data
    classes = 20 if data.dataset == "cifar100" and data.labels == "coarse" else NUM_CLASSES[data.dataset]
    task = build_network(config.model.arch, classes, input_channels(data.dataset), config.model.width,
                         config.model.init)
    print(f"\ntask model {config.model.arch} (width {config.model.width:g}, {classes} classes): "
          f"{parameter_count(task):,} parameters")
    for variant in [v for v in getattr(task, "family", ()) if v != config.model.arch]:
        other = build_network(variant, classes, input_channels(data.dataset), config.model.width)
        print(f"  alternative model.arch={variant}: {parameter_count(other):,} parameters")
    implemented, pending = method_status(config)
    for method in implemented:
        strategy = make_strategy(method, config.method_options.get(method))
        for name, network in strategy.networks(config, classes).items():
            print(f"{method}: {name}: {parameter_count(network):,} parameters")
    if pending:
        print(f"pending methods (not implemented yet): {', '.join(pending)}")
    return 0


def command_list(args) -> int:
    from core import experiments
    from core.reported import REPORTED
    from core.strategy import STRATEGIES

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
            print(f"  {'':<22} methods: {', '.join(implemented) or '-'}"
                  + (f"; pending: {', '.join(pending)}" if pending else ""))
            print(f"  {'':<22} profiles: paper, {', '.join(experiment.profiles)}; reported numbers: {reported}")
    awaiting = sorted({(r.paper, r.experiment) for r in REPORTED} - set(experiments.EXPERIMENTS))
    print("\nfigures and tables with reported numbers, not implemented yet [pending]:")
    for paper, name in awaiting:
        print(f"  {paper}/{name}: {sum(r.paper == paper and r.experiment == name for r in REPORTED)} reported numbers")
    return 0


def command_tables(args) -> int:
    import importlib

    from core.experiments import papers

    if args.paper not in papers():
        raise UserError(f"unknown paper '{args.paper}'; known: {', '.join(papers())}")
    try:
        module = importlib.import_module(f"{args.paper}.tables")
    except ModuleNotFoundError:
        raise UserError(f"{args.paper} has no generated tables") from None
    print(module.markdown())
    return 0


def command_bench(args) -> int:
    from core.bench import bench_sampling, bench_train
    from core.datasets import resolve_data_root

    device = pick_device(args.device)
    if args.what == "segmentation":
        from core.strategy import load_plugins
        from segmentation.bench import bench_camvid_pipeline, bench_segmentation

        load_plugins()
        arch, width = args.arch or "drn_d_22", args.width or 1.0
        bench_segmentation(device, arch, width, args.steps, args.batch_size or 8)
        bench_camvid_pipeline(resolve_data_root(args.data_root), device, arch, width, args.batch_size or 8)
        return 0
    root, arch, width = resolve_data_root(args.data_root), args.arch or "vgg16_bn", args.width or 0.125
    if args.what == "train":
        bench_train(root, device, args.images, width, arch)
    else:
        bench_sampling(root, device, arch, width, args.pool, Path(args.out))
    return 0


def command_demo(args) -> int:
    demo = argparse.Namespace(paper=DEMO["paper"], experiment=DEMO["experiment"], methods=DEMO["methods"],
                              seeds=DEMO["seeds"], profile=DEMO["profile"], out=args.out or DEMO["out"],
                              data_root=args.data_root, device=args.device, download=False, set=[],
                              quiet=args.quiet)
    return command_run(demo)


def add_common(parser, data: bool = True) -> None:
    if data:
        parser.add_argument("--data-root", help="folder with cifar10/, cifar100/, ... (default: $AL_DATA_ROOT)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./reproduce.sh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the (method, seed) jobs of one experiment; resumes where it stopped")
    run.add_argument("paper")
    run.add_argument("experiment")
    run.add_argument("--methods", help="comma-separated (default: every implemented method of the experiment)")
    run.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default: the paper's)")
    run.add_argument("--profile", default="paper", help="paper (default), smoke, mini, or a named variant")
    run.add_argument("--out", default="results")
    run.add_argument("--download", action="store_true", help="fetch torchvision's native format when missing")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.lr=0.01")
    run.add_argument("--quiet", action="store_true", help="no progress bars or per-cycle lines")
    run.add_argument("--pretrained", metavar="FILE_OR_URL",
                     help="ImageNet weights for a segmentation backbone (sets model.pretrained; '' for none)")
    add_common(run)
    describe = sub.add_parser("describe", help="the resolved config and every network with its parameter count")
    describe.add_argument("paper")
    describe.add_argument("experiment")
    describe.add_argument("--profile", default="paper")
    describe.add_argument("--set", action="append", metavar="KEY=VALUE")
    report = sub.add_parser("report", help="figures, tables and paired comparisons from stored results, no training")
    report.add_argument("results", nargs="+", help="one or more results folders (several: one summary table)")
    report.add_argument("--out", help="where to write (default: the results folder; required with several)")
    report.add_argument("--x-axis", choices=["percent", "labels"], default="percent")
    report.add_argument("--test", choices=["t", "wilcoxon"], default="t",
                        help="paired test across seeds: t-test (default) or Wilcoxon signed-rank")
    report.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    compare = sub.add_parser("compare", help="reported vs reproduced numbers for paper-profile results")
    compare.add_argument("results")
    sub.add_parser("list", help="every paper, experiment, method and reported number, with status")
    tables = sub.add_parser("tables", help="a paper's setting tables generated from its configs (VAAL Tables 2, 3)")
    tables.add_argument("paper")
    bench = sub.add_parser("bench", help="benchmarks: 'train' (one epoch vs a plain DataLoader loop), 'sampling' "
                                         "(VAAL Table 1), 'segmentation' (a full-size DRN-D-22 step, Fig. 3 setting)")
    bench.add_argument("what", choices=["train", "sampling", "segmentation"])
    bench.add_argument("--images", type=int, default=5000, help="train: images in the timed epoch")
    bench.add_argument("--pool", type=int, default=45000, help="sampling: unlabeled pool size")
    bench.add_argument("--width", type=float, help="network width (train/sampling: 0.125, segmentation: 1)")
    bench.add_argument("--arch", help="task network (train/sampling: vgg16_bn, segmentation: drn_d_22)")
    bench.add_argument("--steps", type=int, default=5, help="segmentation: timed training steps")
    bench.add_argument("--batch-size", type=int, help="segmentation: batch (default 8, VAAL Table 3)")
    bench.add_argument("--out", default="results/bench", help="sampling: where the table is written")
    add_common(bench)
    demo = sub.add_parser("demo", help="a small real reproduction on CIFAR-10 with a figure and a table")
    demo.add_argument("--out")
    demo.add_argument("--quiet", action="store_true")
    add_common(demo)
    return parser


COMMANDS = {"run": command_run, "report": command_report, "compare": command_compare, "describe": command_describe,
            "list": command_list, "tables": command_tables, "bench": command_bench, "demo": command_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished cycles are saved; run the same command again to resume", file=sys.stderr)
        return 130
