"""`./reproduce.sh bench`: the benchmarks of core/tools/bench.py and those the paper packages register."""
from __future__ import annotations

from core.tools.arguments import add_common, pick_device

NAME = "bench"
HELP = ("benchmarks: 'train' (one epoch vs a plain DataLoader loop), 'sampling' (VAAL Table 1), and those the "
        "paper packages register")


def add_arguments(parser) -> None:
    parser.add_argument("what", help="train, sampling, or a package's benchmark (segmentation)")
    parser.add_argument("--images", type=int, default=5000, help="train: images in the timed epoch")
    parser.add_argument("--pool", type=int, help="sampling: unlabeled pool size (default 45,000 on a GPU as VAAL "
                                                 "Table 1, 900 on the CPU); labeled set, budget and subsets scale")
    parser.add_argument("--methods", help="sampling: comma-separated methods to time (default: every one)")
    parser.add_argument("--width", type=float, help="network width (train/sampling: 0.125, segmentation: 1)")
    parser.add_argument("--arch", help="task network (train/sampling: vgg16_bn, segmentation: drn_d_22)")
    parser.add_argument("--steps", type=int, default=5, help="segmentation: timed training steps")
    parser.add_argument("--batch-size", type=int, help="segmentation: batch (default 8, VAAL Table 3)")
    parser.add_argument("--out", default="results/bench", help="sampling: where the table is written")
    parser.add_argument("--compile", default="on", choices=("off", "on", "graphs"),
                        help="train: runtime.compile of the compiled columns (off leaves them out)")
    add_common(parser)


def run(args) -> int:
    from core.tools.bench import get_benchmark

    get_benchmark(args.what).run(args, pick_device(args.device))
    return 0
