"""Active learning for semantic segmentation: DRNs (and smp models), Cityscapes, BDD100K and CamVid, and the
recipe the papers' segmentation experiments start from (`recipe.py`; vaal/ registers VAAL's Fig. 3 and 4 and the
CamVid experiment). Importing the package registers its datasets, networks and benchmark with `core`; the
acquisition methods are the shared ones, which score an image by its mean pixel score.
segmentation-models-pytorch (seconds to import) is imported only when an `smp:` model is built or
`segmentation.smp_models` is imported, which registers the DRNs as smp encoders."""
from core.lib import register_architecture, register_dataset
from segmentation import data, drn


def smp_model(*args, **kwargs):
    from segmentation.smp_models import SmpSegmenter

    return SmpSegmenter(*args, **kwargs)


for spec in data.SPECS:
    register_dataset(spec)
for variant in drn.VARIANTS:
    register_architecture(variant, drn.drn_seg(variant))
register_architecture("smp", smp_model)

from segmentation import bench  # noqa: E402,F401  (registers the benchmark)
