"""The segmentation recipe that the papers' segmentation experiments start from (VAAL Fig. 3 and 4 and CamVid in
vaal/experiments.py, TA-VAAL supp. Fig. 6d, DAAL's Cityscapes figures), with VAAL's Table 2 crops and Table 3
training (REFERENCES V12-V15 and B5, listed in segmentation/README.md); each paper adds its own method options.

Every method trains a DRN-D-22 (V14) with Adam 1e-3 (Table 3's alpha3; V12), batch 8, random 688 x 688 crops and
horizontal flips (Sec. 4.2), for T = N x 100 epochs / 8 iterations per cycle whatever the labeled-set size, N
being the paper's train + val count (the definition of an epoch VAAL's code uses, V3), and tests the checkpoint
that is best on the validation images.
"""
from core.lib import DataConfig, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig, smoke_profile
from segmentation.drn import pretrained_url

EPOCHS, BATCH, CROP = 100, 8, 688          # Table 3 (V12), Table 2


def segmentation_config(dataset: str, images: int, validation: int, initial: int, budget: int,
                        methods: list[str], title: str, source: str, crop: int = CROP) -> ExperimentConfig:
    return ExperimentConfig(
        title=title, source=source, metric="miou", methods=list(methods), seeds=5,
        data=DataConfig(dataset=dataset, validation_size=validation, hflip=True, image_size=crop, resize=0,
                        workers=8),
        protocol=ProtocolConfig(initial=initial, budget=budget, cycles=7, fraction_base=images),
        model=ModelConfig(arch="drn_d_22", pretrained=pretrained_url("drn_d_22")),
        train=TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=BATCH,
                          iterations=images * EPOCHS // BATCH, drop_last=True, schedule="constant",
                          select_on_validation=True, validate_every=1000, amp=True, eval_batch_size=4))


def smoke(**overrides) -> dict:
    """Seconds: 40 training and 10 test images scaled to 48 px, 32 px crops, a 1/16-width network."""
    return smoke_profile(**{"data.train_subset": 40, "data.test_subset": 10, "data.resize": 48, "data.image_size": 32,
                            "data.workers": 0, "data.validation_size": 6, "protocol.initial": 8, "protocol.budget": 4,
                            "protocol.fraction_base": 0, "model.pretrained": "", "train.batch_size": 4,
                            "train.iterations": 2, "train.validate_every": 1, "train.eval_batch_size": 5, **overrides})
