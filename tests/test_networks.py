import pytest
import torch
import torchvision

import daal  # noqa: F401  (registers wrn28_2)
from core.lib.errors import UserError
from core.lib.networks import build_network, parameter_count


def test_vgg16_bn_full_size_matches_torchvision_parameter_count():
    with torch.device("meta"):                       # counted, not allocated: 134 M parameters
        ours = build_network("vgg16_bn", 10, init="xavier")
        reference = torchvision.models.vgg16_bn(num_classes=10)
    assert parameter_count(ours) == parameter_count(reference) == 134_309_962


def test_cifar_resnet18_full_size_parameter_count_and_block_shapes():
    model = build_network("resnet18_cifar", 10)
    assert parameter_count(model) == 11_173_962       # kuangliu ResNet18 on CIFAR-10
    logits, features, blocks = model.forward_features(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and features.shape == (2, 512)
    assert [tuple(b.shape[1:]) for b in blocks] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]


def test_wrn_28_2_full_size_parameter_count():
    model = build_network("wrn28_2", 10)
    assert parameter_count(model) == 1_467_610
    logits, features, blocks = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 128) and [b.shape[-1] for b in blocks] == [32, 16, 8]


@pytest.mark.parametrize("arch,channels,size", [
    (arch, channels, size) for arch in ("vgg16_bn", "resnet18_cifar", "wrn28_2")
    for channels, size in ((3, 32), (1, 28), (3, 64))
    if not (arch == "vgg16_bn" and size == 28)])      # five 2x2 max-pools need at least 32 pixels
def test_narrow_networks_run_on_every_input_layout(arch, channels, size):
    model = build_network(arch, 7, channels, width=0.0625).eval()
    images = torch.randn(2, channels, size, size)
    logits, features, _ = model.forward_features(images)
    assert logits.shape == (2, 7) and features.shape == (2, model.feature_dim)
    assert torch.allclose(model(images), logits)


def test_width_scales_parameters_down():
    assert parameter_count(build_network("vgg16_bn", 10, width=0.125)) < parameter_count(
        build_network("vgg16_bn", 10, width=0.25)) / 3


def test_xavier_and_torchvision_inits_differ_as_specified():
    torch.manual_seed(0)
    xavier = build_network("vgg16_bn", 10, width=0.125, init="xavier")
    official = build_network("vgg16_bn", 10, width=0.125, init="torchvision")
    linear_x, linear_t = xavier.classifier.weight, official.classifier.weight
    bound = (6 / (linear_x.shape[0] + linear_x.shape[1])) ** 0.5
    assert linear_x.abs().max() <= bound and linear_x.abs().max() > 0.9 * bound
    assert abs(linear_t.std().item() - 0.01) < 0.002


def test_unknown_architecture_is_a_user_error():
    with pytest.raises(UserError, match="model.arch"):
        build_network("alexnet", 10)
