"""Active learning for semantic segmentation: DRNs (and smp models), Cityscapes, BDD100K and CamVid, and the
VAAL segmentation experiments (Fig. 3, Fig. 4). Importing the package registers its datasets, networks and
experiments with `core`; the acquisition methods are the shared ones, which score an image by its mean pixel
score. segmentation-models-pytorch (seconds to import) is imported only when an `smp:` model is built or
`segmentation.smp_models` is imported, which registers the DRNs as smp encoders."""
from core import datasets, networks
from segmentation import data, drn


def smp_model(*args, **kwargs):
    from segmentation.smp_models import SmpSegmenter

    return SmpSegmenter(*args, **kwargs)


datasets.LOADERS.update(data.LOADERS)
datasets.NUM_CLASSES.update(data.NUM_CLASSES)
datasets.TEST_SIZE.update(data.TEST_SIZE)
datasets.TRAIN_SIZE.update(data.TRAIN_SIZE)
datasets.IMAGE_SIZE.update(data.IMAGE_SIZE)
networks.ARCHITECTURES.update({variant: drn.drn_seg(variant) for variant in drn.VARIANTS})
networks.ARCHITECTURES["smp"] = smp_model

from segmentation import bench, experiments  # noqa: E402,F401  (register the benchmark and the experiments)
