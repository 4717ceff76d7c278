"""The segmentation experiments: VAAL Fig. 3 (Cityscapes, BDD100K) and Fig. 4 (the BDD100K ablation), with
sizes from VAAL Table 2, hyperparameters from Table 3 and the decisions of REFERENCES V12-V15 and B5 (listed in
segmentation/README.md); and a CamVid experiment, the same recipe on the driving data available offline.

Every method trains a DRN-D-22 (V14) with Adam 1e-3 (Table 3's alpha3; V12), batch 8, random 688 x 688 crops and
horizontal flips (Sec. 4.2), for T = N x 100 epochs / 8 iterations per cycle whatever the labeled-set size, N
being the paper's train + val count (the definition of an epoch VAAL's code uses, V3), and tests the checkpoint
that is best on the validation images.
"""
from core.lib import (DataConfig, Experiment, ExperimentConfig, ModelConfig, ProtocolConfig, TrainConfig,
                      register_experiment, smoke_profile)
from segmentation.drn import pretrained_url
from vaal.experiments import VAAL_FAMILY, vaal_options

FIG3_METHODS = ["vaal", "qbc", "coreset", "mc_dropout", "suggestive_annotation", "random", "full_data"]
FIG4_METHODS = ["vaal", "vaal_pixel_disc", "vaal_frozen_vae", "vae_wasserstein", "random", "full_data"]
TABLE2 = {   # dataset: (train + val images, validation, initial, budget), VAAL Table 2
    "cityscapes": (2675 + 300, 300, 300, 150),
    "bdd100k": (7000 + 1000, 1000, 800, 400),
}
EPOCHS, BATCH, CROP = 100, 8, 688          # Table 3 (V12), Table 2


def vaal_segmentation_options() -> dict:
    """Table 3, Cityscapes and BDD100K rows (identical): d = 128, alpha1 = alpha2 = 1e-3, lambda2 = 25, batch 8;
    the VAE sees 64 x 64 resizes of the crops (V13)."""
    return vaal_options("cityscapes", batch_size=BATCH, large_image_size=64)


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
                          select_on_validation=True, validate_every=1000, amp=True, eval_batch_size=4),
        method_options=vaal_segmentation_options())


def fig3(dataset: str) -> ExperimentConfig:
    """Fig. 3: initial 10%, +5% per cycle to 40% of the train + val images (Table 2), five runs (Sec. 4.1)."""
    return segmentation_config(dataset, *TABLE2[dataset], FIG3_METHODS, f"VAAL Fig. 3: {dataset}",
                               "VAAL Fig. 3, Sec. 4.2; Tables 2-3; REFERENCES V12-V15, B5")


def fig4() -> ExperimentConfig:
    """Fig. 4 (Sec. 5.1): the ablations on BDD100K, protocol of Fig. 3."""
    return segmentation_config("bdd100k", *TABLE2["bdd100k"], FIG4_METHODS, "VAAL Fig. 4: ablations on BDD100K",
                               "VAAL Fig. 4, Sec. 5.1; Fig. 3 protocol")


def camvid() -> ExperimentConfig:
    """The Fig. 3 recipe on CamVid's 367 training frames: 37 held out for validation, 37 initial (10%), +18 (5%)
    to 40%; crops of 352 (the frames are 360 x 480); tested on the 233 test frames."""
    return segmentation_config("camvid", 367, 37, 37, 18, ["vaal", "coreset", "entropy", "mc_dropout", "qbc",
                                                           "suggestive_annotation", "random", "full_data"],
                               "CamVid: the VAAL segmentation recipe", "VAAL Sec. 4.2 recipe on CamVid", crop=352)


def smoke(**overrides) -> dict:
    """Seconds: 40 training and 10 test images scaled to 48 px, 32 px crops, a 1/16-width network."""
    return smoke_profile(**{"data.train_subset": 40, "data.test_subset": 10, "data.resize": 48, "data.image_size": 32,
                            "data.workers": 0, "data.validation_size": 6, "protocol.initial": 8, "protocol.budget": 4,
                            "protocol.fraction_base": 0, "model.pretrained": "", "train.batch_size": 4,
                            "train.iterations": 2, "train.validate_every": 1, "train.eval_batch_size": 5, **overrides})


CAMVID_MINI = {
    # CPU minutes: frames scaled to 120 x 160, 112 px crops, a quarter-width DRN-D-22 trained from scratch for
    # 800 iterations (fewer leave every labeled-set size at the same undertrained mIoU); a 300-iteration VAAL game
    "data.resize": 120, "data.image_size": 112, "data.workers": 0,
    "model.width": 0.25, "model.pretrained": "", "seeds": 1,
    "protocol.cycles": 4, "protocol.initial": 20, "protocol.budget": 40, "protocol.fraction_base": 0,
    "train.iterations": 800, "train.validate_every": 200, "train.eval_batch_size": 20,
    **{f"method_options.{name}.iterations": 300 for name in VAAL_FAMILY},
}

register_experiment(Experiment("vaal", "fig3_cityscapes", lambda: fig3("cityscapes"), {"smoke": smoke()}))
register_experiment(Experiment("vaal", "fig3_bdd100k", lambda: fig3("bdd100k"), {"smoke": smoke()}))
register_experiment(Experiment("vaal", "fig4_bdd100k", fig4, {"smoke": smoke()}))
register_experiment(Experiment("segmentation", "camvid", camvid, {"smoke": smoke(), "mini": CAMVID_MINI}))
