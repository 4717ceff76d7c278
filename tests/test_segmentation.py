"""Segmentation: DRN shapes and parameter counts, smp registration, label mappings on fixtures with known
answers, mIoU against a hand-computed confusion matrix, joint crops, the dense loss, and every method end to end
on CamVid."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import segmentation  # noqa: F401  (registers datasets and networks)
from core.lib.datasets import Split, load_dataset
from core.lib.errors import UserError
from core.lib.evaluation import confusion_matrix, evaluate, iou_from_confusion, softmax_scores
from core.lib.networks import build_network, parameter_count
from core.lib.sources import Augmentation
from core.lib.trainer import task_loss
from segmentation.data import SegmentationSource, crop_flip_pair, load_bdd100k, load_cityscapes, resize_pair
from segmentation.drn import DRN, VARIANTS, bilinear_upsampling_kernel
from tests.conftest import write_bdd100k_tree, write_cityscapes_tree

# DRN paper Table 1 / fyu/drn README (ImageNet classifiers, millions of parameters)
PAPER_PARAMETERS = {"drn_c_26": 21.1, "drn_c_42": 31.2, "drn_d_22": 16.4, "drn_d_38": 26.5, "drn_d_54": 35.8,
                    "drn_d_105": 54.8}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_drn_parameter_counts_match_the_paper(variant):
    assert parameter_count(DRN(variant)) / 1e6 == pytest.approx(PAPER_PARAMETERS[variant], abs=0.05)


@pytest.mark.parametrize("variant", ["drn_c_26", "drn_d_22", "drn_d_38", "drn_d_105"])
def test_drn_segmenter_keeps_the_input_size_at_output_stride_8(variant):
    model = build_network(variant, 19, width=0.125).eval()
    with torch.no_grad():
        logits, features, blocks = model.forward_features(torch.randn(2, 3, 48, 80))
    assert logits.shape == (2, 19, 48, 80)
    assert blocks[0].shape[-2:] == (6, 10)                         # 48 / 8, 80 / 8
    assert features.shape == (2, model.feature_dim)


def test_fixed_bilinear_upsampling_preserves_constant_maps_and_has_no_parameters():
    kernel = bilinear_upsampling_kernel(1)
    assert kernel.sum() == pytest.approx(64.0)                     # 8 x 8 contributions summing to one each
    assert kernel[0, 0, 7, 7] == pytest.approx((1 - abs(7 / 8 - 15 / 16)) ** 2)
    model = build_network("drn_d_22", 3, width=0.125)
    up = model.upsample(torch.ones(1, 3, 4, 4))
    assert up.shape == (1, 3, 32, 32) and torch.allclose(up[..., 4:-4, 4:-4], torch.ones(1, 3, 24, 24))
    assert all(p is not model.up_kernel for p in model.parameters())


def test_drn_encoders_are_registered_with_smp_and_smp_models_build_through_the_config():
    import segmentation_models_pytorch as smp

    import segmentation.smp_models  # noqa: F401  (registers the DRN encoders)

    deeplab = smp.DeepLabV3(encoder_name="drn_d_22", encoder_weights=None, classes=5).eval()
    with torch.no_grad():
        assert deeplab(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    model = build_network("smp:DeepLabV3:drn_d_22", 5).eval()
    with torch.no_grad():
        logits, features, _ = model.forward_features(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 5, 64, 64) and features.shape == (1, model.feature_dim)
    with pytest.raises(UserError, match="smp:<Decoder>:<encoder>"):
        build_network("smp:NoSuchDecoder:drn_d_22", 5)
    with pytest.raises(UserError, match="full width"):
        build_network("smp:DeepLabV3:drn_d_22", 5, width=0.5)


def test_pretrained_backbone_loads_from_a_local_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = DRN("drn_d_22", width=0.125)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}           # DataParallel-saved, with fc
    torch.save(state, tmp_path / "drn.pth")
    model = build_network("drn_d_22", 19, width=0.125, pretrained=str(tmp_path / "drn.pth"))
    assert torch.equal(model.base[0][0].weight, source.layer0[0].weight)
    assert torch.equal(model.base[-1][0].weight, source.layer8[0].weight)
    with pytest.raises(UserError, match="does not fit"):
        build_network("drn_d_38", 19, width=0.125, pretrained=str(tmp_path / "drn.pth"))
    with pytest.raises(UserError, match="neither a file nor a URL"):
        build_network("drn_d_22", 19, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="not supported"):
        build_network("vgg16_bn", 10, pretrained=str(tmp_path / "drn.pth"))


@pytest.mark.parametrize("in_memory", [True, False])
def test_cityscapes_label_ids_map_to_the_19_train_ids(tmp_path, in_memory):
    # label ids 0 (unlabeled), 7 (road), 8 (sidewalk), 26 (car), 33 (bicycle), 34 (not a label) ->
    # train ids 255, 0, 1, 13, 18, 255 (cityscapesScripts labels.py)
    root = write_cityscapes_tree(tmp_path, {"train": 4, "val": 2}, mask_values=(0, 7, 8, 26, 33, 34))
    dataset = load_cityscapes(root, tmp_path / "cache", in_memory=in_memory)
    assert dataset.num_classes == 19 and len(dataset.train) == 4 and len(dataset.test) == 2
    source = dataset.make_source(dataset.test, Augmentation(resize=0), "cpu", workers=0)
    masks = torch.cat([m for _, m in source.labeled_batches(np.arange(2), None, 2)])
    expected = np.resize([255, 0, 1, 13, 18, 255], 16 * 24).reshape(16, 24)
    assert torch.equal(masks[1], torch.as_tensor(expected))


def test_bdd100k_masks_keep_train_ids_and_ignore_the_rest(tmp_path):
    root = write_bdd100k_tree(tmp_path, {"train": 3, "val": 2}, mask_values=(0, 18, 19, 255))
    dataset = load_bdd100k(root, tmp_path / "cache", in_memory=False)
    source = dataset.make_source(dataset.train, Augmentation(resize=0), "cpu", workers=0)
    images, masks = next(source.labeled_batches(np.arange(3), None, 3))
    assert images.shape == (3, 3, 16, 24) and images.dtype == torch.float32
    assert torch.equal(masks[0], torch.as_tensor(np.resize([0, 18, 255, 255], 16 * 24).reshape(16, 24)))


def test_missing_masks_and_folders_are_user_errors(tmp_path):
    root = write_cityscapes_tree(tmp_path, {"train": 2, "val": 1})
    next((root / "cityscapes" / "gtFine" / "train").rglob("*.png")).unlink()
    with pytest.raises(UserError, match="have no mask"):
        load_cityscapes(root, tmp_path / "cache")
    with pytest.raises(UserError, match="dataset bdd100k not found"):
        load_bdd100k(tmp_path, tmp_path / "cache")


def test_camvid_void_is_ignored(data_root):
    dataset = load_dataset("camvid", data_root)
    assert dataset.num_classes == 11 and len(dataset.train) == 367 and len(dataset.test) == 233
    values = np.unique(dataset.train.masks[:20])
    assert 11 not in values and 255 in values and values[values < 255].max() <= 10


def test_miou_matches_a_hand_computed_confusion_matrix():
    truth = np.array([[[0, 0, 1, 255], [2, 2, 1, 1]]], dtype=np.uint8)
    predicted = np.array([[[0, 1, 1, 2], [2, 0, 1, 1]]], dtype=np.uint8)
    # rows truth, columns prediction; the ignored pixel (predicted 2) does not count
    hand = torch.tensor([[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    split = Split(targets=np.zeros(1, dtype=np.int64), images=np.repeat(predicted[..., None], 3, axis=3),
                  masks=truth)
    source = SegmentationSource(split, (0, 0, 0), (1 / 255,) * 3, None, Augmentation(resize=0), "cpu")

    class PixelValueIsTheClass(nn.Module):
        def forward(self, images):
            return F.one_hot(images[:, 0].round().long(), 3).permute(0, 3, 1, 2).float()

    model = PixelValueIsTheClass()
    assert torch.equal(confusion_matrix(model, source, np.arange(1), None, 3, 1), hand)
    result = evaluate(model, source, np.arange(1), None, 3, 1)
    iou = [1 / (2 + 2 - 1), 3 / (3 + 4 - 3), 1 / (2 + 1 - 1)]            # diag / (row + column - diag)
    assert result["value"] == pytest.approx(100 * np.mean(iou))
    assert result["per_class"] == pytest.approx([100 * v for v in iou], abs=1e-3)
    assert result["pixel_accuracy"] == pytest.approx(100 * 5 / 7)
    absent = iou_from_confusion(torch.tensor([[2, 0, 0], [0, 0, 0], [1, 0, 1]]))
    assert absent["per_class"][1] is None and absent["value"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)


def test_crops_and_flips_move_masks_with_their_images():
    generator = torch.Generator().manual_seed(0)
    positions = torch.arange(12 * 16).view(1, 12, 16).repeat(6, 1, 1)
    images = torch.stack([positions % 251] * 3, dim=1).to(torch.uint8)
    masks = (positions % 251).to(torch.uint8)
    cropped, cropped_masks = crop_flip_pair(images, masks, 8, True, generator)
    assert cropped.shape == (6, 3, 8, 8) and torch.equal(cropped[:, 0], cropped_masks)
    assert len({tuple(c[0, 0].tolist()) for c in cropped}) > 1          # offsets and flips differ per image
    padded, padded_masks = crop_flip_pair(images, masks, 20, False, generator)
    assert padded.shape == (6, 3, 20, 20) and (padded_masks == 255).sum() == 6 * (20 * 20 - 12 * 16)
    small, small_masks = resize_pair(images, masks, 6)
    assert small.shape == (6, 3, 6, 8) and small_masks.shape == (6, 6, 8)


def test_dense_loss_averages_over_non_ignored_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5)
    targets = torch.randint(0, 4, (2, 3, 5))
    targets[0, 0] = 255
    loss, per_image = task_loss(logits, targets)
    assert loss.item() == pytest.approx(F.nll_loss(F.log_softmax(logits, 1), targets, ignore_index=255).item())
    assert per_image.shape == (2,)
    assert task_loss(logits, torch.full_like(targets, 255))[0].item() == 0.0


def test_smp_losses_replace_the_pixel_cross_entropy_on_masks_only():
    from segmentation_models_pytorch.losses import DiceLoss

    from core.lib.trainer import mask_loss

    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 3, 5), torch.randint(0, 4, (2, 3, 5))
    targets[1, 1] = 255
    dice = mask_loss("dice")
    expected = DiceLoss("multiclass", ignore_index=255)(logits, targets)
    assert task_loss(logits, targets, dice)[0].item() == pytest.approx(expected.item())
    assert mask_loss("cross_entropy") is None
    with pytest.raises(UserError, match="segmentation masks only"):
        task_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]), dice)


def test_pixel_entropy_is_averaged_per_image():
    split = Split(targets=np.zeros(2, dtype=np.int64), images=np.zeros((2, 8, 8, 3), dtype=np.uint8),
                  masks=np.zeros((2, 8, 8), dtype=np.uint8))
    source = SegmentationSource(split, (0, 0, 0), (1, 1, 1), None, Augmentation(resize=0), "cpu")

    class HalfCertain(nn.Module):       # left half uniform over 4 classes, right half certain
        def forward(self, images):
            logits = torch.zeros(len(images), 4, 8, 8)
            logits[:, 0, :, 4:] = 100.0
            return logits

    from baselines.uncertainty import entropy

    scores = softmax_scores(HalfCertain(), source, np.arange(2), 2, entropy)
    assert torch.allclose(scores, torch.full((2,), np.log(4) / 2), atol=1e-5)


def test_segmentation_training_lowers_the_loss_on_camvid(data_root):
    from core.lib.config import TrainConfig
    from core.lib.trainer import Trainer

    dataset = load_dataset("camvid", data_root)
    source = dataset.make_source(dataset.train, Augmentation(hflip=True, image_size=40, resize=48), "cpu")
    torch.manual_seed(0)
    model = build_network("drn_d_22", 11, width=0.125)
    images, masks = next(source.labeled_batches(np.arange(8), None, 8))

    def loss_now():
        model.eval()
        with torch.no_grad():
            return task_loss(model(images), masks)[0].item()

    before = loss_now()
    cfg = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0, batch_size=8, iterations=30)
    generator = torch.Generator().manual_seed(0)
    Trainer(cfg, "cpu", 11, progress=False).fit(model, source, np.arange(8), np.zeros(367), generator=generator)
    assert loss_now() < 0.7 * before


def camvid_smoke_rows(method: str, data_root, out) -> list[dict]:
    from core.lib.experiments import get_experiment
    from core.lib.loop import RunSettings
    from core.tools.jobs import run_job

    config = get_experiment("segmentation", "camvid").config("smoke", {"seeds": 1, "protocol.cycles": 2})
    return run_job(config, method, 0, RunSettings(data_root, out, torch.device("cpu"), "smoke", progress=False))


@pytest.fixture(scope="module")
def random_selection(data_root, tmp_path_factory) -> list[int]:
    return camvid_smoke_rows("random", data_root, tmp_path_factory.mktemp("random"))[0]["selected"]


@pytest.mark.parametrize("method", ["entropy", "mc_dropout", "coreset", "qbc", "suggestive_annotation",
                                    "vaal_frozen_vae", "vae_wasserstein"])
def test_every_segmentation_method_runs_on_camvid_and_selects_otherwise_than_random(
        method, data_root, tmp_path, random_selection):
    rows = camvid_smoke_rows(method, data_root, tmp_path)
    assert [r["n_labeled"] for r in rows] == [8, 12] and rows[0]["metric"] == "miou"
    assert len(set(rows[0]["selected"])) == 4 and 0 <= rows[1]["value"] <= 100
    assert sorted(rows[0]["selected"]) != sorted(random_selection)


@pytest.mark.parametrize("variant", ["drn_c_26", "drn_d_22"])
def test_drn_logits_are_cropped_to_odd_frame_sizes(variant):
    """Sides that are not multiples of 8 (48 x 85, a 720 x 1280 frame resized) keep their size, in the full
    forward, in MC-Dropout's trunk + head and in the loss against a mask of the frame's size."""
    model = build_network(variant, 5, width=0.0625)
    images, masks = torch.randn(2, 3, 48, 85), torch.randint(0, 5, (2, 48, 85))
    logits, _, blocks = model.forward_features(images)
    assert logits.shape == (2, 5, 48, 85) and blocks[0].shape[-2:] == (6, 11)
    assert model.forward_head(model.forward_trunk(torch.randn(1, 3, 37, 50)))[0].shape == (1, 5, 37, 50)
    assert torch.isfinite(task_loss(logits, masks)[0])


def fyu_drnseg_checkpoint(variant: str, classes: int) -> tuple[DRN, dict]:
    """A state dict laid out as fyu/drn's segment.py saves a trained DRNSeg: `base.<i>` for the levels, `seg`
    for the 1x1 classifier, the frozen `up` kernel, under DataParallel's `module.` and "state_dict"."""
    torch.manual_seed(2)
    backbone = DRN(variant, width=0.125)
    state = {f"base.{i}.{key}": value for i, name in enumerate(backbone.level_names())
             for key, value in getattr(backbone, name).state_dict().items()}
    state |= {"seg.weight": torch.randn(classes, backbone.out_dim, 1, 1), "seg.bias": torch.randn(classes),
              "up.weight": bilinear_upsampling_kernel(classes)}
    return backbone, {"epoch": 500, "state_dict": {f"module.{k}": v for k, v in state.items()}}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("variant", ["drn_c_26", "drn_d_22"])
def test_fyus_trained_drnseg_checkpoints_load(variant, tmp_path):
    backbone, checkpoint = fyu_drnseg_checkpoint(variant, 19)
    torch.save(checkpoint, tmp_path / "drn_seg_best.pth")
    model = build_network(variant, 19, width=0.125, pretrained=str(tmp_path / "drn_seg_best.pth"))
    assert same_weights(model.base, nn.Sequential(*backbone.levels()))
    assert torch.equal(model.classifier.weight, checkpoint["state_dict"]["module.seg.weight"])
    other_classes = build_network(variant, 11, width=0.125, pretrained=str(tmp_path / "drn_seg_best.pth"))
    assert same_weights(other_classes.base, nn.Sequential(*backbone.levels()))         # the backbone only


def test_a_failed_weights_download_says_in_one_line_how_to_pass_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))             # no cached copy
    url = (tmp_path / "gone" / "drn_d_22-4bd2f8ea.pth").as_uri()
    with pytest.raises(UserError, match="cannot download") as err:
        build_network("drn_d_22", 19, width=0.125, pretrained=url)
    assert "--pretrained FILE" in str(err.value) and "\n" not in str(err.value)


def test_fyus_file_names_carry_a_checksum_that_is_verified(tmp_path, monkeypatch):
    import hashlib

    from segmentation import drn

    torch.save(DRN("drn_d_22", width=0.125).state_dict(), tmp_path / "weights.pth")
    corrupt = tmp_path / "drn_d_22-4bd2f8ea.pth"
    corrupt.write_bytes((tmp_path / "weights.pth").read_bytes())
    with pytest.raises(UserError, match="sha256 does not start with 4bd2f8ea"):
        build_network("drn_d_22", 19, width=0.125, pretrained=str(corrupt))
    prefix = hashlib.sha256((tmp_path / "weights.pth").read_bytes()).hexdigest()[:8]
    genuine = (tmp_path / "weights.pth").rename(tmp_path / f"drn_d_22-{prefix}.pth")
    monkeypatch.setitem(drn.PRETRAINED, "drn_d_22", genuine.name)
    assert drn.known_sha256_prefix(str(genuine)) == prefix
    build_network("drn_d_22", 19, width=0.125, pretrained=str(genuine))


def test_short_sides_are_padded_as_fyu_centred_images_reflected_masks_ignored():
    """3 x 4 to a 6 x 6 crop: rows pad 1 above, 2 below; columns 1 each side. fyu's `pad_reflection` mirrors the
    start without its edge pixel and the end with it."""
    rows, cols = torch.arange(3)[:, None], torch.arange(4)[None, :]
    images = (10 * rows + cols).to(torch.uint8).expand(2, 3, 3, 4)
    masks = torch.ones(2, 3, 4, dtype=torch.uint8)
    padded, padded_masks = crop_flip_pair(images, masks, 6, False, torch.Generator().manual_seed(0))
    expected_rows, expected_cols = torch.tensor([1, 0, 1, 2, 2, 1]), torch.tensor([1, 0, 1, 2, 3, 3])
    assert torch.equal(padded[0, 0], (10 * expected_rows[:, None] + expected_cols[None, :]).to(torch.uint8))
    inside = torch.zeros(6, 6, dtype=torch.bool)
    inside[1:4, 1:5] = True
    assert torch.equal(padded_masks[0] == 1, inside) and bool((padded_masks[0][~inside] == 255).all())
