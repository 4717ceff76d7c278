"""Issue 28 item 3: runs are deterministic on CUDA, checked on the CPU. Every registered network and every method's
own networks run forward and backward, in both memory formats, under a dispatch mode that records each aten op;
an op that CUDA refuses under torch.use_deterministic_algorithms(True) fails the test. Where an op has an
exactly equal deterministic form it is used (VGG's 7x7 pool of a 1x1 map; LADA's grid sampler on images),
tested here to the bit."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from core.lib.datasets import dataset_spec
from core.lib.experiments import EXPERIMENTS
from core.lib.networks import ARCHITECTURES, ExactAdaptiveAvgPool2d, build_network
from core.lib.seeding import float_settings, set_deterministic
from core.lib.strategy import STRATEGIES, CycleSizes, load_plugins, make_strategy
from core.lib.trainer import task_loss
from core.tools.jobs import nondeterministic_kernel

load_plugins()


def always(_):
    return True


# The ops behind "The following normally-nondeterministic operations will throw a RuntimeError when mode=True"
# in torch.use_deterministic_algorithms' documentation (PyTorch 2.14), with the condition under which each
# throws; ops that the list says "will act deterministically" are left out. Resize of a quantized tensor is
# left out too: nothing here quantizes.
REFUSED_ON_CUDA = {
    "avg_pool3d_backward": always,                      # AvgPool3d, differentiated
    "_adaptive_avg_pool2d_backward": always,            # AdaptiveAvgPool2d, differentiated
    "_adaptive_avg_pool3d_backward": always,            # AdaptiveAvgPool3d, differentiated
    "adaptive_max_pool2d_backward": always,             # AdaptiveMaxPool2d, differentiated
    "fractional_max_pool2d_backward": always,           # FractionalMaxPool2d, differentiated
    "fractional_max_pool3d_backward": always,           # FractionalMaxPool3d, differentiated
    "max_unpool2d": always,                             # MaxUnpool1d and MaxUnpool2d
    "max_unpool3d": always,                             # MaxUnpool3d
    "upsample_linear1d_backward": always,               # interpolate linear, bilinear, bicubic, trilinear,
    "upsample_bilinear2d_backward": always,             # differentiated (with antialias too)
    "_upsample_bilinear2d_aa_backward": always,
    "upsample_bicubic2d_backward": always,
    "_upsample_bicubic2d_aa_backward": always,
    "upsample_trilinear3d_backward": always,
    "reflection_pad1d_backward": always,                # ReflectionPad1d/2d/3d, differentiated
    "reflection_pad2d_backward": always,
    "reflection_pad3d_backward": always,
    "nll_loss2d_forward": lambda a: a["reduction"] != 0,   # NLLLoss: CUDA's image kernel sums with atomics
    "_ctc_loss_backward": always,                       # CTCLoss, differentiated
    "_embedding_bag_backward": lambda a: a["mode"] == 2,   # EmbeddingBag(mode="max"), differentiated
    "_embedding_bag_dense_backward": lambda a: a["mode"] == 2,
    "put_": always,                                     # put_: accumulate=False anywhere, True on CUDA
    "put": always,
    "histc": always,
    "bincount": lambda a: a["weights"] is not None,
    "median.dim": always,                               # median with indices
    "grid_sampler_2d_backward": always,                 # grid_sample, differentiated
    "grid_sampler_3d_backward": always,
    "scatter_reduce.two": lambda a: a["reduce"] == "prod",
    "scatter_reduce_.two": lambda a: a["reduce"] == "prod",
}


def named_arguments(func, args, kwargs) -> dict:
    arguments = func._schema.arguments
    values = {a.name: a.default_value for a in arguments if a.has_default_value()}
    values.update(zip((a.name for a in arguments), args))
    return {**values, **kwargs}


def refused_on_cuda(func, args, kwargs) -> bool:
    packet, overload = func._schema.name.removeprefix("aten::"), func._schema.overload_name
    rule = REFUSED_ON_CUDA.get(f"{packet}.{overload}") or REFUSED_ON_CUDA.get(packet)
    return rule is not None and rule(named_arguments(func, args, kwargs))


class RefusedOps(TorchDispatchMode):
    """The ops CUDA would refuse, run while deterministic algorithms are on (as PyTorch checks at the call)."""

    def __init__(self):
        super().__init__()
        self.found: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.are_deterministic_algorithms_enabled() and refused_on_cuda(func, args, kwargs):
            self.found.add(func._schema.name.removeprefix("aten::"))
        return func(*args, **kwargs)


@pytest.fixture
def strict():
    """Deterministic algorithms on, as a run sets them; the process's previous setting afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    set_deterministic(True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def refused_ops(run) -> set[str]:
    with RefusedOps() as recorder:
        run()
    return recorder.found


def test_every_listed_op_is_an_aten_op():
    for name in REFUSED_ON_CUDA:
        packet, _, overload = name.partition(".")
        assert hasattr(getattr(torch.ops.aten, packet), overload or "default"), name


def test_the_recorder_sees_what_cuda_refuses_and_only_that(strict):
    image = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert refused_ops(lambda: nn.AdaptiveAvgPool2d(3)(image).sum().backward()) == {"_adaptive_avg_pool2d_backward"}
    assert refused_ops(lambda: F.interpolate(image, scale_factor=2, mode="bilinear").sum().backward()) == \
        {"upsample_bilinear2d_backward"}
    assert refused_ops(lambda: F.interpolate(image, scale_factor=2, mode="nearest").sum().backward()) == set()
    logits, masks = torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4))
    assert refused_ops(lambda: F.cross_entropy(logits, masks)) == {"nll_loss2d_forward"}
    assert refused_ops(lambda: F.cross_entropy(logits, masks, reduction="none")) == set()
    assert refused_ops(lambda: torch.bincount(masks.flatten(), torch.ones(32))) == {"bincount"}
    assert refused_ops(lambda: torch.bincount(masks.flatten())) == set()
    torch.use_deterministic_algorithms(False)
    assert refused_ops(lambda: F.cross_entropy(logits, masks)) == set()     # as CUDA, when allowed


# ---------------------------------------------------------------- exactly equal deterministic forms

@pytest.mark.parametrize("side", [1, 7, 2])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_exact_adaptive_pool_equals_pytorchs_to_the_bit_forward_and_backward(side, memory_format, strict):
    """1x1 (VGG at 32x32) and 7x7 (at 224) maps are replicated; 2x2 falls back to the pool."""
    torch.manual_seed(0)
    image = (torch.randn(4, 16, side, side) * 100).contiguous(memory_format=memory_format)
    grad = (torch.randn(4, 16, 7, 7) * 1e3).contiguous(memory_format=memory_format)
    results = []
    for pool in (nn.AdaptiveAvgPool2d((7, 7)), ExactAdaptiveAvgPool2d((7, 7))):
        x = image.clone().requires_grad_()
        out = pool(x)
        out.backward(grad)
        results.append((out.detach(), x.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    found = refused_ops(lambda: ExactAdaptiveAvgPool2d((7, 7))(image.clone().requires_grad_()).backward(grad))
    assert found == (set() if side in (1, 7) else {"_adaptive_avg_pool2d_backward"})


@pytest.mark.parametrize("autocast", [False, True])
def test_lada_grid_sampling_of_images_equals_pytorchs_to_the_bit_and_is_not_refused(autocast, strict):
    from lada.networks import grid_sample

    torch.manual_seed(0)
    images = torch.randn(4, 3, 16, 16)
    theta = torch.eye(2, 3).expand(4, 2, 3) + 0.1 * torch.randn(4, 2, 3)
    grad = torch.randn(4, 3, 16, 16)
    results = []
    for sample in (lambda x, grid: F.grid_sample(x, grid, align_corners=False), grid_sample):
        nu = theta.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = sample(images, F.affine_grid(nu.to(torch.bfloat16) if autocast else nu, [4, 3, 16, 16],
                                               align_corners=False))
        out.backward(grad)
        results.append((out.detach(), nu.grad))
    assert results[1][0].dtype == torch.float32
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    grid = F.affine_grid(theta.clone().requires_grad_(), [4, 3, 16, 16], align_corners=False)
    assert refused_ops(lambda: grid_sample(images, grid).sum().backward()) == set()
    assert torch.are_deterministic_algorithms_enabled()
    differentiated = images.clone().requires_grad_()        # the input's gradient needs CUDA's atomics
    assert refused_ops(lambda: grid_sample(differentiated, grid).sum().backward()) == {"grid_sampler_2d_backward"}


# ---------------------------------------------------------------- every network, forward and backward

# Registered networks at small widths: (arch, width, input side). VGG at 32 and at 224 pixels (its two pools).
# The DRNs of the default suite hold every kind of level (C and D stems, basic and bottleneck blocks); the
# deeper ones repeat them and run under -m slow.
NETWORKS = [("vgg16_bn", 1 / 16, 32), ("vgg16_bn", 1 / 32, 224), ("resnet18_cifar", 1 / 16, 32),
            ("resnet18", 1 / 16, 64), ("wrn28_2", 1 / 8, 32), ("drn_c_26", 1 / 16, 16), ("drn_d_22", 1 / 16, 16),
            ("drn_d_54", 1 / 16, 16)]
DEEPER = [("drn_c_42", 1 / 16, 16), ("drn_d_38", 1 / 16, 16), ("drn_d_105", 1 / 16, 16)]
# Networks that run an op CUDA refuses, and why; their runs need runtime.deterministic=false (docs/reliability.md)
NEEDS_NONDETERMINISM = {
    "smp:DeepLabV3:drn_d_22": {"upsample_bilinear2d_backward"},    # smp's DeepLabV3 head upsamples bilinearly
}
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def forward_backward(model: nn.Module, inputs: list, memory_format, loss) -> None:
    """A training step's forward and backward (without the optimizer) in the memory format TrainingForward uses."""
    def formatted(x):
        if isinstance(x, list):
            return [formatted(item) for item in x]
        return x.contiguous(memory_format=memory_format) if x.ndim == 4 else x

    model.to(memory_format=memory_format).train()
    loss(model, *formatted(inputs)).backward()


def task_step(model, images):
    """The trainer's loss, plus every output a hook reads (features and blocks: LL4AL, LADA, DAAL)."""
    logits, features, blocks = model.forward_features(images)
    targets = torch.randint(0, logits.shape[1], (len(images), *logits.shape[2:]))
    return task_loss(logits, targets)[0] + sum(t.float().mean() for t in (features, *blocks))


def test_every_registered_network_is_covered():
    covered = {arch for arch, _, _ in NETWORKS + DEEPER} | {name.split(":")[0] for name in NEEDS_NONDETERMINISM}
    assert covered == set(ARCHITECTURES)


@pytest.mark.parametrize("memory_format", FORMATS)
@pytest.mark.parametrize("arch,width,side", NETWORKS + [pytest.param(*n, marks=pytest.mark.slow) for n in DEEPER],
                         ids=[f"{a}@{s}" for a, _, s in NETWORKS + DEEPER])
def test_a_registered_network_runs_no_op_that_cuda_refuses(arch, width, side, memory_format, strict):
    torch.manual_seed(0)
    model = build_network(arch, 5, 3, width)
    images = torch.randn(2, 3, side, side)
    assert refused_ops(lambda: forward_backward(model, [images], FORMATS[memory_format], task_step)) == set()


@pytest.mark.slow
@pytest.mark.parametrize("arch", NEEDS_NONDETERMINISM)
def test_an_smp_network_runs_exactly_the_refused_ops_it_is_documented_with(arch, strict):
    """smp models are built at full width only and import smp (seconds): slow."""
    model = build_network(arch, 5, 3, 1.0)
    found = refused_ops(lambda: forward_backward(model, [torch.randn(2, 3, 32, 32)], torch.contiguous_format,
                                                 task_step))
    assert found == NEEDS_NONDETERMINISM[arch]


@pytest.mark.parametrize("loss", ["dice", "focal", "lovasz"])
def test_the_mask_losses_run_no_op_that_cuda_refuses(loss, strict):
    from core.lib.trainer import mask_loss

    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    masks = torch.randint(0, 5, (2, 8, 8))
    masks[0, 0] = 255
    assert refused_ops(lambda: task_loss(logits, masks, mask_loss(loss))[0].backward()) == set()


# ---------------------------------------------------------------- the methods' own networks

def method_configs():
    """Each method with its networks, in the smoke profile of the first experiment that lists it."""
    found = {}
    for _, experiment in sorted(EXPERIMENTS.items()):
        config = experiment.config("smoke")
        for method in config.methods:
            if method in STRATEGIES and method not in found:
                found[method] = config
    return found


def method_inputs(config, name: str, network: nn.Module, declared) -> list:
    """Inputs of a batch of 2: the shapes the method declares for `plan`, else those its network reads."""
    if declared:
        return [torch.randn(2, *shape) for shape in declared]
    kind = type(network).__name__
    spec = dataset_spec(config.data.dataset)
    channels, side = spec.channels, spec.image_size[0] if spec.small_images else 32
    if kind == "LossPredictionModule":
        task = build_network(config.model.arch, 10, channels, config.model.width)
        return [[b.detach() for b in task.forward_features(torch.randn(2, channels, side, side))[2]]]
    if kind == "IntrusionDiscriminator":
        return [torch.randn(2, network.fc1.in_features)]
    if kind == "AdaMixupPolicy":
        return [torch.randn(2, channels, side, side)]
    if kind == "TaskAwareVAE":
        return [torch.randn(2, channels, network.size, network.size)] + ([torch.rand(2)] if network.ranked else [])
    raise AssertionError(f"no inputs known for {name} ({kind}); declare them in the method's cycle_work")


def output_sum(network, *inputs):
    outputs = network(*inputs)
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    return sum(o.float().sum() for o in outputs if isinstance(o, torch.Tensor) and o.requires_grad)


def method_networks() -> dict[str, tuple]:
    """Every method's networks, once per kind (class, parameter shapes and inputs): {label: (config, method,
    name)}."""
    found, kinds = {}, set()
    for method, config in method_configs().items():
        classes = dataset_spec(config.data.dataset).classes
        strategy = make_strategy(method, config.method_options.get(method))
        declared = strategy.cycle_work(config, classes, CycleSizes(0, 8, 8, 8, 2, 1)).networks
        for name, network in strategy.networks(config, classes).items():
            inputs = declared[name].inputs if name in declared else None
            kind = (type(network).__name__, tuple(tuple(p.shape) for p in network.parameters()), inputs)
            if kind not in kinds:
                kinds.add(kind)
                found[f"{method}: {name}"] = config, method, name
    return found


METHOD_NETWORKS = method_networks()


def test_the_methods_networks_include_every_papers():
    """VAAL's VAE and discriminator, TA-VAAL's VAE, DAAL's, LADA's STN and policies, the learning-loss module."""
    kinds = set()
    for config, method, name in METHOD_NETWORKS.values():
        strategy = make_strategy(method, config.method_options.get(method))
        network = strategy.networks(config, dataset_spec(config.data.dataset).classes)[name]
        kinds.add(f"{type(network).__module__}.{type(network).__name__}")
    assert {"vaal.networks.VAE", "vaal.networks.Discriminator", "ta_vaal.networks.TaskAwareVAE",
            "daal.networks.FeatureVAE", "daal.networks.ScoreNet", "daal.networks.Discriminator",
            "lada.networks.SpatialTransformer", "lada.networks.PolicyGenerator", "lada.networks.AdaMixupPolicy",
            "lada.networks.IntrusionDiscriminator", "baselines.learning_loss.LossPredictionModule"} <= kinds


@pytest.mark.parametrize("label", METHOD_NETWORKS)
def test_a_methods_network_runs_no_op_that_cuda_refuses(label, strict):
    config, method, name = METHOD_NETWORKS[label]
    classes = dataset_spec(config.data.dataset).classes
    strategy = make_strategy(method, config.method_options.get(method))
    torch.manual_seed(0)
    network = strategy.networks(config, classes)[name]
    declared = strategy.cycle_work(config, classes, CycleSizes(0, 8, 8, 8, 2, 1)).networks
    inputs = method_inputs(config, name, network, declared[name].inputs if name in declared else None)
    for memory_format in FORMATS.values():
        assert refused_ops(lambda: forward_backward(network, inputs, memory_format, output_sum)) == set()


# ---------------------------------------------------------------- the settings a run records

def test_strict_determinism_raises_and_its_error_names_the_kernel(strict):
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    with pytest.raises(RuntimeError) as raised:
        torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))     # no deterministic kernel on any device
    assert nondeterministic_kernel(raised.value) == "put_"
    assert nondeterministic_kernel(RuntimeError("out of memory")) is None
    assert float_settings("cpu") == {"deterministic": True, "tf32_matmul": None, "tf32_cudnn": None,
                                     "cuda_version": None, "cudnn_version": None}
    set_deterministic(False)
    torch.zeros(2).put_(torch.tensor([0]), torch.tensor([1.0]))
    assert float_settings("cpu")["deterministic"] is False


def test_the_cuda_settings_are_read_from_pytorch(monkeypatch):
    """Faked on the CPU: what a CUDA row records."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    settings = float_settings("cuda")
    assert settings["cuda_version"] == "12.8" and settings["cudnn_version"] == 90100
    assert settings["tf32_matmul"] is torch.backends.cuda.matmul.allow_tf32
    assert settings["tf32_cudnn"] is torch.backends.cudnn.allow_tf32
