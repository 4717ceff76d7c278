"""`python -m tests.golden --regenerate`: recompute the golden rows twice, each in a fresh one-thread process,
and store them (with the platform that made them) only when both runs agree."""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.conftest import shared_data_root
from tests.golden import CASES, differences, produce, run_cases, write_goldens


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__)
    parser.add_argument("--regenerate", action="store_true", help="recompute and store the golden rows")
    parser.add_argument("--child", type=Path, metavar="FILE", help=argparse.SUPPRESS)  # produce()'s process
    args = parser.parse_args()
    if not (args.regenerate or args.child):
        parser.print_help()
        return 2
    root = shared_data_root()
    if root is None:
        print("error: the shared datasets are not here; set AL_DATA_ROOT to a folder holding cifar10/ and camvid/",
              file=sys.stderr)
        return 2
    if args.child:
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory(prefix="golden-runs-") as out:
            args.child.write_text(json.dumps(run_cases(root, Path(out))))
        return 0
    first, second = produce(root), produce(root)
    unstable = differences(first, second)
    if unstable:
        print("error: two runs gave different rows, nothing written:\n" + "\n".join(unstable), file=sys.stderr)
        return 1
    write_goldens(first)
    print(f"stored the rows of {len(CASES)} experiments in {Path(__file__).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
