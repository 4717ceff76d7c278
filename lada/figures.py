"""LADA's figures and result tables from stored runs, no training:

    ./reproduce.sh figures lada fig2 RESULTS            tau* over acquisitions (supplement Fig. 2), from diagnostics
    ./reproduce.sh figures lada tsne RESULTS --experiment table1_fashion_mnist --cycle 1
                                                   acquired (star) vs augmented (x) instances (Figs. 6-8)
    ./reproduce.sh figures lada tables RESULTS          best / final / AUBC (L6), Table 4 times, Table 5 vs reported

RESULTS is a run's --out folder. Fig. 1 and Fig. 3 are the learning curves `./reproduce.sh run` writes.
The t-SNE needs scikit-learn (optional extra `tsne`)."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from core.lib import RunFolder, UserError, write_atomic
from core.tools.report import load_rows, pyplot


def fig2(rows: list[dict], path: Path) -> Path:
    """Mean tau* of all pairs and of the queried pairs at each acquisition, mean over seeds, one line per
    (experiment, profile) of the learned-tau methods."""
    curves = defaultdict(lambda: defaultdict(list))
    for row in rows:
        diagnostics = row.get("diagnostics") or {}
        if row["paper"] == "lada" and "generator_losses" in diagnostics:
            key = f"{row['experiment']} {row['method']} ({row.get('profile', 'paper')})"
            curves[key][row["cycle"] + 1].append((diagnostics["tau_mean"], diagnostics["tau_selected_mean"]))
    if not curves:
        raise UserError("no learned-tau diagnostics (lada, lada_vaalmix, lada_ll4almix) under the results folder")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for key, points in sorted(curves.items()):
        steps = sorted(points)
        means = np.array([np.mean(points[s], axis=0) for s in steps])
        line, = ax.plot(steps, means[:, 0], marker="o", markersize=3, label=f"{key}: all pairs")
        ax.plot(steps, means[:, 1], linestyle="--", color=line.get_color(), label=f"{key}: queried pairs")
    ax.set_xlabel("acquisition")
    ax.set_ylabel("mean tau*")
    ax.set_title("LADA supplement Fig. 2: inferred tau*")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _run(results: Path, experiment: str, method: str, seed: int):
    from core.lib import from_dict

    folder = RunFolder.of(results, "lada", experiment, method, seed)
    if not folder.config.exists():
        raise UserError(f"no {method} run at {folder.path}; run ./reproduce.sh run lada {experiment} --methods "
                        f"{method}")
    return folder, from_dict(folder.read_config()["config"])


def _model(folder: RunFolder, config, dataset, cycle: int):
    from core.lib import build_network

    weights = folder.model(cycle)
    if not weights.exists():
        raise UserError(f"{weights} is missing: t-SNE needs the warm-started models (train.reinit=false) and a "
                        "finished cycle; choose another --cycle")
    model = build_network(config.model.arch, dataset.num_classes, dataset.channels, config.model.width,
                          config.model.init)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model.eval()


@torch.no_grad()
def _features_and_entropy(model, images: torch.Tensor, k: int | None = None, hidden: torch.Tensor | None = None):
    """Penultimate features and entropy (bits) of images, or of mixed layer-k maps via forward_rest."""
    from lada.method import entropy_bits

    if hidden is None:
        logits, features, _ = model.forward_features(images)
        return features, entropy_bits(logits)
    captured = []
    handle = model.classifier.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    logits = model.forward_rest(hidden, k)
    handle.remove()
    return captured[0], entropy_bits(logits)


def tsne(results: Path, data_root: Path, experiment: str, cycle: int, seed: int, path: Path, draws: int = 10) -> Path:
    """Max entropy's acquisitions (left) and LADA's acquired pairs with their virtual instances (right) at one
    acquisition, each on the candidate subset, embedded with t-SNE (supplement Sec. F)."""
    try:
        from sklearn.manifold import TSNE
    except ModuleNotFoundError:
        raise UserError("the t-SNE figures need scikit-learn: install the optional extra, "
                        "pip install -e .[tsne]") from None
    from core.lib import Augmentation, Pool, candidate_subset, prepare_dataset
    from lada.method import QueriedPairs, mix

    panels = []
    for method in ("entropy", "lada"):
        folder, config = _run(results, experiment, method, seed)
        dataset = prepare_dataset(config, data_root, seed)
        source = dataset.make_source(dataset.train, Augmentation(hflip=False), "cpu")
        model = _model(folder, config, dataset, cycle)
        pool = Pool.load(folder.pool(cycle))
        subset = candidate_subset(pool.unlabeled, config.protocol.subset, seed, cycle)
        load = lambda idx: source.load(torch.as_tensor(np.asarray(idx)), False, None)   # noqa: E731
        background, _ = _features_and_entropy(model, load(subset))
        if method == "lada":
            pairs = QueriedPairs.load(folder.method_file("lada_pairs", cycle, ".npz"))
            chosen = np.concatenate([pairs.first, pairs.second])
            torch.manual_seed(seed)
            tau = torch.as_tensor(pairs.tau, dtype=torch.float32)
            lam = torch.distributions.Beta(tau, tau).sample((draws,))
            h1, h2 = (model.kth_featuremap(load(ix), pairs.layer) for ix in (pairs.first, pairs.second))
            virtual, virtual_entropy = _features_and_entropy(
                model, None, pairs.layer, mix(h1.unsqueeze(0), h2.unsqueeze(0), lam).flatten(0, 1))
        else:
            chosen = np.asarray(folder.rows()[cycle]["selected"])
            virtual, virtual_entropy = background[:0], torch.zeros(0)
        acquired, acquired_entropy = _features_and_entropy(model, load(chosen))
        panels.append((method, background, acquired, acquired_entropy, virtual, virtual_entropy))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    for ax, (method, background, acquired, acquired_entropy, virtual, virtual_entropy) in zip(axes, panels):
        points = torch.cat([background, acquired, virtual]).numpy()
        embedded = TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(points) - 1)).fit_transform(points)
        parts = np.split(embedded, np.cumsum([len(background), len(acquired)]))
        ax.scatter(*parts[0].T, s=4, color="lightgray", label="candidates")
        ax.scatter(*parts[1].T, s=90, marker="*", color="black", label="acquired")
        title = f"{method}: acquired H mean {acquired_entropy.mean():.2f} bits"
        if len(virtual):
            ax.scatter(*parts[2].T, s=14, marker="x", color="red", label="augmented (virtual)")
            title += f"\nvirtual H max {virtual_entropy.max():.2f}, mean {virtual_entropy.mean():.2f}"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{experiment}, acquisition after cycle {cycle}, seed {seed} (supplement Figs. 6-8)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def tables(rows: list[dict], out: Path) -> Path:
    from lada.tables import summary, table4, table5

    text = (f"## Best, final and AUBC test accuracy (L6)\n\n{summary(rows)}\n"
            f"## Table 4: measured seconds per acquisition\n\n{table4(rows)}\n"
            f"## Table 5 beside the reported values\n\n{table5(rows)}")
    write_atomic(out, text)
    return out


def main(argv: list[str] | None = None) -> int:
    from core.lib import resolve_data_root

    parser = argparse.ArgumentParser(prog="./reproduce.sh figures lada", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("fig2", "tsne", "tables"))
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, help="output file (default: next to the results)")
    parser.add_argument("--experiment", default="table1_fashion_mnist")
    parser.add_argument("--cycle", type=int, default=1, help="t-SNE: the acquisition made after this cycle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    try:
        if args.what == "tsne":
            written = tsne(args.results, resolve_data_root(args.data_root), args.experiment, args.cycle, args.seed,
                           args.out or args.results / f"lada_tsne_{args.experiment}_cycle{args.cycle}.png")
        elif args.what == "fig2":
            written = fig2(load_rows(args.results), args.out or args.results / "lada_fig2_tau.png")
        else:
            written = tables(load_rows(args.results), args.out or args.results / "lada_tables.md")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
