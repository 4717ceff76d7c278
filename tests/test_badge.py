"""BADGE against autograd and against a plain k-means++ with scipy's sampling (the official code's), and on a
case built so that diversity must show: BADGE beside entropy and random."""
import numpy as np
import pytest
import torch
from scipy import stats

from baselines.badge import Badge, gradient_embedding, gradient_factors, kmeans_pp_seeds
from baselines.uncertainty import entropy
from core.lib.errors import UserError
from core.lib.experiments import get_experiment
from core.lib.networks import build_network


def test_the_embedding_is_the_cross_entropy_gradient_at_the_predicted_label_with_the_codes_sign():
    torch.manual_seed(0)
    model = build_network("resnet18_cifar", 10, width=0.0625).eval()
    images = torch.randn(6, 3, 32, 32)
    logits, features, _ = model.forward_features(images)
    embedding = gradient_embedding(gradient_factors(logits.detach(), features.detach()))
    for row in range(len(images)):
        loss = torch.nn.functional.cross_entropy(logits[row:row + 1], logits[row:row + 1].argmax(1))
        weight_gradient, = torch.autograd.grad(loss, model.classifier.weight, retain_graph=True)
        assert torch.allclose(embedding[row], -weight_gradient.double().flatten(), atol=1e-6)


def reference_kmeans_pp(points: np.ndarray, count: int, rng: np.random.Generator, first: str) -> list[int]:
    """The official init_centers written plainly: explicit distances, scipy's rv_discrete for each draw."""
    def draw(weights):
        return int(stats.rv_discrete(values=(np.arange(len(points)), weights / weights.sum())).rvs(random_state=rng))

    chosen = [int(np.argmax(np.linalg.norm(points, axis=1)))] if first == "largest" else \
        [draw(np.ones(len(points)))]
    nearest = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < count:
        pick = draw(nearest ** 2)
        while pick in chosen:
            pick = draw(nearest ** 2)
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
    return chosen


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("first", ["largest", "random"])
def test_the_seeding_equals_a_plain_kmeans_pp_on_the_same_random_stream(seed, first):
    generator = torch.Generator().manual_seed(seed)
    factors = gradient_factors(torch.randn(60, 5, generator=generator),
                               torch.randn(60, 7, generator=generator).relu())
    count = 12
    uniforms = torch.from_numpy(np.random.default_rng(seed).random(count - (first == "largest")))
    ours = kmeans_pp_seeds(factors, count, uniforms, first).tolist()
    points = gradient_embedding(factors).numpy()
    assert ours == reference_kmeans_pp(points, count, np.random.default_rng(seed), first)


def test_points_at_distance_zero_are_never_chosen_twice():
    scale = torch.zeros(20, 3, dtype=torch.float64)          # every embedding 0: the code would stop here
    picks = kmeans_pp_seeds((scale, torch.ones(20, 4, dtype=torch.float64)), 20, torch.rand(19, dtype=torch.float64))
    assert sorted(picks.tolist()) == list(range(20))


def clusters(copies: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """5 clusters of identical images: features along their own axis, softmax more uncertain from cluster 0 to 4."""
    features = torch.eye(5).repeat_interleave(copies, 0) * 3
    sharpness = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5]).repeat_interleave(copies)
    logits = torch.zeros(5 * copies, 4)
    logits[:, 0] = sharpness
    return logits, features


def test_badge_covers_every_cluster_where_entropy_and_random_pile_into_a_few():
    logits, features = clusters()
    cluster_of = np.arange(len(logits)) // 8
    by_entropy = torch.topk(entropy(torch.softmax(logits, 1)), 5).indices.numpy()
    assert set(cluster_of[by_entropy]) == {4}                # the most uncertain cluster only
    factors = gradient_factors(logits, features)
    for seed in range(20):
        picks = kmeans_pp_seeds(factors, 5, torch.from_numpy(np.random.default_rng(seed).random(4))).numpy()
        assert sorted(cluster_of[picks]) == [0, 1, 2, 3, 4], seed
    covered = [len(set(cluster_of[np.random.default_rng(seed).choice(40, 5, replace=False)])) for seed in range(20)]
    assert sum(c == 5 for c in covered) <= 3


def test_the_option_is_checked_and_badge_joins_the_cifar_comparisons_as_an_extra():
    with pytest.raises(UserError, match="first_center must be largest"):
        Badge({"first_center": "farthest"})
    for paper, name in [("baselines", "ll4al_cifar10"), ("vaal", "fig2_cifar100"), ("ta_vaal", "supp_fig5a_cifar10"),
                        ("daal", "fig3_cifar10"), ("lada", "table1_cifar10")]:
        config = get_experiment(paper, name).config()
        assert config.methods[-1] == "badge" and config.extra_methods == ["badge"], name
    for paper, name in [("vaal", "ablation_cifar10"), ("ta_vaal", "supp_fig5c_svhn"), ("segmentation", "camvid")]:
        assert "badge" not in get_experiment(paper, name).config().methods, name
