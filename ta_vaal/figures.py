"""The TA-VAAL figures that are not plain learning curves, drawn from stored results only (no training):

- `improvement`: main Fig. 3, each method's accuracy minus random's at every stage, paired by seed (the seeds
  share their initial sets), from the runs of supp. Fig. 5a-b (or any experiment with a random run).
- `ranking_loss`: supp. Fig. 2, the loss-prediction module's loss per epoch (`diagnostics.ranking_loss_per_epoch`),
  mean +- std over seeds and cycles, per method.
- `samples`: supp. Fig. 7, the first 100 images of each selection (the highest scores: the loop stores a selection
  in score order) at stages 1-3, with their per-class counts, from the stored indices and the images.

    ./reproduce.sh figures ta_vaal improvement results/ta_vaal/supp_fig5a_cifar10
    ./reproduce.sh figures ta_vaal ranking_loss results/ta_vaal/supp_fig2_ranking_loss_cifar10
    ./reproduce.sh figures ta_vaal samples results/ta_vaal/supp_fig6a_cifar10_imb100 [--seed 0] [--data-root DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from core.lib import RunFolder, UserError, write_atomic
from core.tools.report import load_rows, pyplot


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)
    return path


def improvement_over_random(rows: list[dict]) -> dict[str, dict[int, list[float]]]:
    """{method: {n_labeled: [value - random's value, one per seed that both have]}}."""
    random = {(r["seed"], r["n_labeled"]): r["value"] for r in rows if r["method"] == "random"}
    if not random:
        raise UserError("no random run in these results; run the experiment with --methods ...,random")
    gains = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["seed"], row["n_labeled"])
        if row["method"] != "random" and key in random:
            gains[row["method"]][row["n_labeled"]].append(row["value"] - random[key])
    return gains


def improvement_table(gains: dict) -> str:
    labels = sorted({n for points in gains.values() for n in points})
    lines = ["| method | " + " | ".join(f"{n:,}" for n in labels) + " |", "|---|" + "---|" * len(labels)]
    for method in sorted(gains):
        cells = [f"{np.mean(gains[method][n]):+.2f} ± {np.std(gains[method][n]):.2f}" if n in gains[method] else "-"
                 for n in labels]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_improvement(results: Path, out: Path) -> list[Path]:
    rows = load_rows(results)
    gains = improvement_over_random(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for method in sorted(gains):
        labels = sorted(gains[method])
        mean = np.array([np.mean(gains[method][n]) for n in labels])
        std = np.array([np.std(gains[method][n]) for n in labels])
        line, = ax.plot(labels, mean, marker="o", markersize=3, label=method)
        ax.fill_between(labels, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="black", linewidth=1)
    ax.set_xlabel("labeled images")
    ax.set_ylabel(f"{rows[0]['metric']} minus random's (points)")
    ax.set_title(f"improvement over random: {rows[0]['experiment']} ({rows[0]['profile']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    table = out / "improvement_over_random.md"
    write_atomic(table, improvement_table(gains))
    return [_save(fig, out / "improvement_over_random.png"), table]


def ranking_loss_curves(rows: list[dict]) -> dict[str, np.ndarray]:
    """{method: (runs, epochs)} of the logged per-epoch ranking losses."""
    curves = defaultdict(list)
    for row in rows:
        logged = row.get("diagnostics", {}).get("ranking_loss_per_epoch")
        if logged:
            curves[row["method"]].append(logged)
    if not curves:
        raise UserError("no ranking_loss_per_epoch in these results' diagnostics; run supp_fig2_ranking_loss_cifar10 "
                        "(learning_loss_v1, learning_loss_v2) or ta_vaal")
    return {method: np.asarray([c[:min(map(len, runs))] for c in runs]) for method, runs in curves.items()}


def plot_ranking_loss(results: Path, out: Path) -> list[Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for method, runs in sorted(ranking_loss_curves(load_rows(results)).items()):
        epochs = np.arange(1, runs.shape[1] + 1)
        line, = ax.plot(epochs, runs.mean(0), label=f"{method} ({len(runs)} trainings)")
        ax.fill_between(epochs, runs.mean(0) - runs.std(0), runs.mean(0) + runs.std(0), color=line.get_color(),
                        alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss-prediction loss (eta x L_rank), mean over the epoch")
    ax.set_title("supp. Fig. 2: learning loss vs learning loss v2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, out / "ranking_loss_per_epoch.png")]


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)


def plot_samples(results: Path, out: Path, data_root: Path, seed: int, shown: int = 100, stages: int = 3
                 ) -> list[Path]:
    from core.lib import from_dict, prepare_dataset

    rows = [r for r in load_rows(results) if r["seed"] == seed and r["selected"] and r["cycle"] < stages]
    if not rows:
        raise UserError(f"no selections of seed {seed} below {results}; pass --seed, or run the experiment first")
    plt = pyplot()
    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(len(methods), stages, figsize=(3.6 * stages, 4.2 * len(methods)), dpi=120,
                             squeeze=False)
    written = []
    for row in sorted(rows, key=lambda r: (r["method"], r["cycle"])):
        stored = RunFolder.below(results, row["method"], seed).read_config()
        dataset = prepare_dataset(from_dict(stored["config"]), data_root, seed)
        chosen = np.asarray(row["selected"][:shown])
        images, labels = dataset.train.images[chosen], dataset.train.targets[chosen]
        side = int(np.ceil(np.sqrt(len(chosen))))
        grid = np.zeros((side * images.shape[1], side * images.shape[2], images.shape[3]), dtype=np.uint8)
        for k, image in enumerate(images):
            r, c = divmod(k, side)
            grid[r * image.shape[0]:(r + 1) * image.shape[0], c * image.shape[1]:(c + 1) * image.shape[1]] = image
        counts = class_counts(labels, dataset.num_classes)
        ax = axes[methods.index(row["method"]), row["cycle"]]
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{row['method']}: stage {row['cycle'] + 1}", fontsize=9)
        half = (dataset.num_classes + 1) // 2
        ax.set_xlabel("\n".join(" ".join(f"{name[:5]} {count}" for name, count in
                                         zip(dataset.classes[i:i + half], counts[i:i + half]))
                                for i in (0, half)), fontsize=7)
        written.append({"method": row["method"], "stage": row["cycle"] + 1,
                        "counts": dict(zip(dataset.classes, counts.tolist()))})
    counts_file = out / f"sampled_images_seed{seed}.json"
    write_atomic(counts_file, json.dumps(written, indent=2) + "\n")
    return [_save(fig, out / f"sampled_images_seed{seed}.png"), counts_file]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./reproduce.sh figures ta_vaal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["improvement", "ranking_loss", "samples"])
    parser.add_argument("results", help="an experiment's results folder, e.g. results/ta_vaal/supp_fig5a_cifar10")
    parser.add_argument("--out", help="where to write (default: the results folder)")
    parser.add_argument("--seed", type=int, default=0, help="samples: the seed whose selections are shown")
    parser.add_argument("--data-root", help="samples: folder with cifar10/ ... (default: $AL_DATA_ROOT)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    out = Path(args.out or results)
    try:
        if args.figure == "improvement":
            written = plot_improvement(results, out)
        elif args.figure == "ranking_loss":
            written = plot_ranking_loss(results, out)
        else:
            from core.lib import resolve_data_root

            written = plot_samples(results, out, resolve_data_root(args.data_root), args.seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
