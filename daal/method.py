"""DAAL (Wang et al., ECCV 2020, Sec. 3, Alg. 1) and its discriminator ablations (Fig. 6), as selection strategies.

Per cycle, after the shared trainer has trained the task model, the task model's features of the labeled (x_l)
and unlabeled (x_u) images are extracted once (eval mode, no augmentation) and a fresh DAAL plays its game on
them. ScoreNet gives s = S(x_u); one VAE encodes both weighted inputs, (1 - s) x_u -> e^ -> x^_u (uncertainty
branch) and s x_u -> e~ -> x~_u (representativeness branch); uDis tells x_l from x^_u, rDis x_u from x~_u.
    L_recon    = E ||phi(x_u) - phi(x^_u)||^2 + E ||varphi(x_u) - varphi(x~_u)||^2          (Eq. 3; phi, varphi:
                                                                      the last hidden layers of uDis, rDis)
    L_prior    = KL(q(e^|.) || N(0, I)) + KL(q(e~|.) || N(0, I))                              (Eq. 1)
    L_GAN      = log uDis(x_l) + log(1 - uDis(x^_u)) + log rDis(x_u) + log(1 - rDis(x~_u))   (Eq. 4)
    L_sparsity = L_LR + L_DPP,  L_LR = |sigma - mean(s)|,                                     (Eq. 5-6)
                 L_DPP = -log det(D_S + eps I) + log det(D + I),  D_ij = s_i s_j x_i.x_j      (Eq. 6-7)
Alg. 1, one forward per batch (lines 10-12), then three updates from that forward (lines 14-16):
    {ScoreNet, encoder} <- L_recon + L_prior + L_sparsity;   {decoder} <- L_recon + L_GAN (line 12's w_r is
    the decoder w_d);   {uDis, rDis} <- maximise L_GAN.
Each group has its own Adam and receives only the gradient of its own objective.
Selection (Sec. 3.1): the `budget` candidates with the highest ScoreNet score (ScoreNet in eval mode, ranked by
its logit); the experiments score the whole unlabeled pool (protocol.subset = 0: one stage, no random subset).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from baselines.uncertainty import entropy
from core.lib import (CycleContext, CycleSizes, CycleWork, Endless, GameState, NetworkUse, ScoringStrategy, UserError,
                      autocast, build_network, class_last, dataset_spec, image_scores, inference, map_batches, play,
                      register_method, scaled, seed_everything, stream_key)
from daal.networks import Discriminator, FeatureVAE, ScoreNet, encoder_parameters

DAAL_OPTIONS = {
    "mlp_width": 512,             # ScoreNet, VAE and discriminator hidden width (D1); scaled by model.width
    "latent_dim": 32,             # VAE latent size (VAAL's CIFAR value; the paper gives none)
    "dropout": 0.4,               # after every hidden layer of ScoreNet, encoder and decoder (Sec. 3.1)
    "lr": 5e-4,                   # Adam, all three groups (Sec. 4.2)
    "batch_size": 128,            # unlabeled features per batch; labeled batches of the same size (Sec. 4.2)
    "sigma": 0.2,                 # Eq. 6 (Sec. 4.2)
    "epochs": 0,                  # passes over the unlabeled features; 0: the task model's epochs (Sec. 4.2)
    "iterations": 0,              # > 0: this many batches instead (the small profiles)
    "feature_layer": "penultimate",   # or "block<i>": the global average pool of forward_features' block i
    "dpp_subset": "top",          # S of Eq. 7: "top" ceil(sigma n) scores of the batch, or "random" ones
    "dpp_jitter": 1e-4,           # eps added to the diagonal of D_S, which is singular when sigma n > d
    "dpp_normalize": True,        # x_i / ||x_i|| in D (a cosine kernel); False: raw features
    "recon_reduction": "sum",     # Eq. 3 over hidden units: "sum" (Gaussian log-likelihood) or "mean"
    "generator_loss": "minimax",  # decoder: Eq. 4 as written (SUM-GAN), or "non_saturating": -log D(fake)
}
CHOICES = {"dpp_subset": ("top", "random"), "recon_reduction": ("sum", "mean"),
           "generator_loss": ("minimax", "non_saturating")}
BLOCK = re.compile(r"block(\d+)$")
SELECTOR_TERMS = ("recon", "prior", "length", "dpp")   # Alg. 1 line 14: L_recon + L_prior + L_sparsity (Eq. 5)


# ----------------------------------------------------------------------------------------------- equations


def feature_matching(original: torch.Tensor, reconstructed: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. 3 for one branch: the squared distance of discriminator hidden features, over units, batch mean."""
    squared = (original - reconstructed).pow(2)
    return (squared.sum(1) if reduction == "sum" else squared.mean(1)).mean()


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L_prior of Eq. 1: KL(N(mu, sigma^2) || N(0, I)) summed over latent units, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def length_regularizer(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_LR of Eq. 6: |sigma - mean(s)| (the L2 norm of a scalar)."""
    return (sigma - scores.mean()).abs()


def subset_size(count: int, sigma: float) -> int:
    """|S| = ceil(sigma n), at least 1 and at most n."""
    return min(count, max(1, math.ceil(sigma * count - 1e-9)))


def dpp_subset(scores: torch.Tensor, sigma: float, rule: str = "top") -> torch.Tensor:
    """S of Eq. 7, a sigma n subset of the batch: the highest scores ("top"), or a uniformly random one."""
    size = subset_size(len(scores), sigma)
    if rule == "top":
        return torch.topk(scores.detach(), size).indices
    return torch.randperm(len(scores), device=scores.device)[:size]


def dpp_loss(scores: torch.Tensor, features: torch.Tensor, subset: torch.Tensor, jitter: float = 1e-4,
             normalize: bool = True) -> torch.Tensor:
    """L_DPP of Eq. 6-7: -log(det(D_S + eps I) / det(D + I)), D_ij = s_i s_j x_i.x_j, in float64 with slogdet.

    D + I is positive definite; D_S = diag(s_S) K_SS diag(s_S) is singular when |S| exceeds the feature
    dimension or two selected features coincide, hence eps."""
    x = F.normalize(features.double(), dim=1) if normalize else features.double()
    weighted = scores.double()[:, None] * x
    kernel = weighted @ weighted.T
    picked = kernel[subset][:, subset]
    eye_s = torch.eye(len(subset), dtype=kernel.dtype, device=kernel.device)
    eye = torch.eye(len(kernel), dtype=kernel.dtype, device=kernel.device)
    log_det_subset = torch.linalg.slogdet(picked + jitter * eye_s).logabsdet
    log_det_all = torch.linalg.slogdet(kernel + eye).logabsdet
    return (log_det_all - log_det_subset).to(scores.dtype)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho (no tie correction): the Pearson correlation of the ranks."""
    ranks = [torch.argsort(torch.argsort(v)).double() for v in (a, b)]
    centred = [r - r.mean() for r in ranks]
    denominator = (centred[0].norm() * centred[1].norm()).clamp(min=1e-12)
    return float((centred[0] * centred[1]).sum() / denominator)


# ----------------------------------------------------------------------------------------------- features


def pooled(block: torch.Tensor) -> torch.Tensor:
    return block.mean((2, 3)) if block.ndim == 4 else block


class FeatureBank:
    """Task-model features of some training indices (eval mode, no augmentation), looked up by index; also each
    image's predictive entropy, for the diagnostics."""

    def __init__(self, model: nn.Module, ctx: CycleContext, indices: np.ndarray, layer: str = "penultimate"):
        block = None if layer == "penultimate" else int(BLOCK.match(layer).group(1))
        model.eval()
        forward = inference(model.forward_features, ctx.eval_batch_size)

        def compute(images):
            with autocast(ctx.device, ctx.config.train.amp):
                logits, features, blocks = forward(images)
            features = features if block is None else pooled(blocks[block])
            probabilities = class_last(torch.softmax(logits.float(), dim=1))
            return features.float(), image_scores(entropy(probabilities))

        self.indices = np.asarray(indices)
        self.order = np.argsort(self.indices, kind="stable")
        self.features, self.entropy = map_batches(ctx.source, self.indices, ctx.eval_batch_size, compute)

    def rows(self, indices: np.ndarray) -> torch.Tensor:
        positions = self.order[np.searchsorted(self.indices, indices, sorter=self.order)]
        return torch.as_tensor(positions, device=self.features.device)

    def __getitem__(self, indices: np.ndarray) -> torch.Tensor:
        return self.features[self.rows(indices)]


def feature_dim(config, num_classes: int, layer: str = "penultimate") -> int:
    """The dimension of the task features DAAL sees, from one dummy pass of the configured task network."""
    spec = dataset_spec(config.data.dataset)
    task = build_network(config.model.arch, num_classes, spec.channels, config.model.width)
    if layer == "penultimate":
        return task.feature_dim
    side = 32 if spec.small_images else config.data.image_size
    with torch.no_grad():
        blocks = task.eval().forward_features(torch.zeros(1, spec.channels, side, side))[2]
    return blocks[int(BLOCK.match(layer).group(1))].shape[1]


def endless_batches(features: torch.Tensor, batch_size: int, generator: torch.Generator, drop_last: bool) -> Endless:
    """Reshuffled passes over the rows of `features`, forever (a pass shorter than a batch yields it whole)."""
    count = len(features)
    size = min(batch_size, count)

    def one_pass():
        order = torch.randperm(count, generator=generator, device=generator.device).to(features.device)
        stop = count - count % size if drop_last else count
        for start in range(0, stop, size):
            yield features[order[start:start + size]]

    return Endless(one_pass, generator)


# ----------------------------------------------------------------------------------------------- the game


@dataclass
class DAALNetworks:
    scorer: ScoreNet
    vae: FeatureVAE
    udis: Discriminator | None
    rdis: Discriminator | None

    def modules(self) -> dict[str, nn.Module]:
        found = {"ScoreNet": self.scorer, "VAE": self.vae, "uDis": self.udis, "rDis": self.rdis}
        return {name: module for name, module in found.items() if module is not None}

    def groups(self) -> dict[str, list[nn.Parameter]]:
        """Alg. 1's three parameter groups: {w_s, w_e}, {w_d}, {w_u, w_r}."""
        discriminators = [p for d in (self.udis, self.rdis) if d is not None for p in d.parameters()]
        return {"selector": [*self.scorer.parameters(), *encoder_parameters(self.vae)],
                "decoder": list(self.vae.decoder.parameters()), "discriminators": discriminators}

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)


def game_losses(nets: DAALNetworks, x_l: torch.Tensor, x_u: torch.Tensor, options: dict) -> dict[str, torch.Tensor]:
    """Every loss term of one batch from one forward pass (Alg. 1 lines 10-12); a missing discriminator
    drops its branch (Fig. 6 ablations)."""
    scores = nets.scorer(x_u)
    zero = x_u.new_zeros(())
    terms = {"recon": zero, "prior": zero, "gan": zero, "generator": zero}
    branches = ((nets.udis, 1 - scores, x_l), (nets.rdis, scores, x_u))
    for disc, weight, real in branches:
        if disc is None:
            continue
        reconstruction, _, mu, logvar = nets.vae(weight[:, None] * x_u)
        fake_logit, fake_hidden = disc.logit_and_hidden(reconstruction)
        original_logit, original_hidden = disc.logit_and_hidden(x_u)
        real_logit = original_logit if real is x_u else disc.logit_and_hidden(real)[0]
        terms["recon"] = terms["recon"] + feature_matching(original_hidden, fake_hidden, options["recon_reduction"])
        terms["prior"] = terms["prior"] + kl_to_prior(mu, logvar)
        gan = F.logsigmoid(real_logit).mean() + F.logsigmoid(-fake_logit).mean()
        terms["gan"] = terms["gan"] + gan
        fooled = -F.logsigmoid(fake_logit).mean() if options["generator_loss"] == "non_saturating" else gan
        terms["generator"] = terms["generator"] + fooled
    terms["length"] = length_regularizer(scores, options["sigma"])
    subset = dpp_subset(scores, options["sigma"], options["dpp_subset"])
    terms["dpp"] = dpp_loss(scores, x_u, subset, options["dpp_jitter"], options["dpp_normalize"])
    terms["score_std"] = scores.detach().std() if len(scores) > 1 else zero
    return terms


def objectives(terms: dict[str, torch.Tensor], selector_terms: tuple[str, ...] = SELECTOR_TERMS
               ) -> dict[str, torch.Tensor]:
    """Alg. 1 lines 14-16: what each parameter group minimises."""
    return {"selector": sum(terms[name] for name in selector_terms),
            "decoder": terms["recon"] + terms["generator"],
            "discriminators": -terms["gan"]}


def make_optimizers(nets: DAALNetworks, lr: float) -> dict[str, torch.optim.Optimizer]:
    return {name: torch.optim.Adam(params, lr=lr) for name, params in nets.groups().items() if params}


def game_step(nets: DAALNetworks, optimizers: dict[str, torch.optim.Optimizer], x_l: torch.Tensor,
              x_u: torch.Tensor, options: dict, selector_terms: tuple[str, ...] = SELECTOR_TERMS
              ) -> dict[str, torch.Tensor]:
    """One batch of Alg. 1: one forward, each group's gradient of its own objective, then the three steps."""
    terms = game_losses(nets, x_l, x_u, options)
    goals, groups = objectives(terms, selector_terms), nets.groups()
    gradients = {name: torch.autograd.grad(goals[name], groups[name], retain_graph=True, allow_unused=True)
                 for name in optimizers}
    for name, optimizer in optimizers.items():
        for parameter, gradient in zip(groups[name], gradients[name]):
            parameter.grad = torch.zeros_like(parameter) if gradient is None else gradient
        optimizer.step()
    return {name: value.detach() for name, value in terms.items()}


# ----------------------------------------------------------------------------------------------- strategy


@register_method
class DAAL(ScoringStrategy):
    name = "daal"
    default_options = DAAL_OPTIONS
    discriminators = ("uDis", "rDis")
    selector_terms = SELECTOR_TERMS

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        for key, allowed in CHOICES.items():
            if self.options[key] not in allowed:
                raise UserError(f"method_options.{self.name}.{key}='{self.options[key]}' is not one of "
                                f"{', '.join(allowed)}")
        layer = self.options["feature_layer"]
        if layer != "penultimate" and not BLOCK.match(layer):
            raise UserError(f"method_options.{self.name}.feature_layer='{layer}' must be 'penultimate' or "
                            "'block<i>' (e.g. block2)")
        self.nets: DAALNetworks | None = None

    def build(self, in_features: int, width: float) -> DAALNetworks:
        hidden, opts = scaled(self.options["mlp_width"], width), self.options
        return DAALNetworks(
            scorer=ScoreNet(in_features, hidden, opts["dropout"]),
            vae=FeatureVAE(in_features, opts["latent_dim"], hidden, opts["dropout"]),
            udis=Discriminator(in_features, hidden) if "uDis" in self.discriminators else None,
            rdis=Discriminator(in_features, hidden) if "rDis" in self.discriminators else None)

    def networks(self, config, num_classes: int) -> dict:
        dim = feature_dim(config, num_classes, self.options["feature_layer"])
        return self.build(dim, config.model.width).modules()

    def game_iterations(self, config, unlabeled: int) -> int:
        opts = self.options
        if opts["iterations"]:
            return opts["iterations"]
        epochs = opts["epochs"] or config.train.epochs
        if epochs:
            return epochs * -(-unlabeled // opts["batch_size"])
        return config.train.iterations

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """The features of the labeled and unlabeled images (one task-model pass); per game iteration, ScoreNet
        on an unlabeled batch, the VAE on its two weighted copies and each discriminator on two batches, forward
        and backward; scoring, ScoreNet on the candidates."""
        if not cycle.candidates:
            return CycleWork()
        features = ((feature_dim(config, num_classes, self.options["feature_layer"]),),)
        samples = self.game_iterations(config, cycle.unlabeled) * self.options["batch_size"]
        uses = {"ScoreNet": NetworkUse(features, trained=samples, inferred=cycle.candidates),
                "VAE": NetworkUse(features, trained=2 * samples),
                **{name: NetworkUse(features, trained=2 * samples) for name in self.discriminators}}
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.labeled + cycle.unlabeled, networks=uses)

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        pool = ctx.pool
        self.bank = FeatureBank(model, ctx, np.concatenate([pool.labeled, pool.unlabeled]),
                                self.options["feature_layer"])
        seed_everything("daal", ctx.seed, ctx.cycle)
        self.nets = self.build(self.bank.features.shape[1], ctx.config.model.width)
        for module in self.nets.modules().values():
            module.to(ctx.device)
        iterations = self.game_iterations(ctx.config, len(pool.unlabeled))
        self.train_game(ctx, self.bank[pool.labeled], self.bank[pool.unlabeled], iterations)

    def train_game(self, ctx: CycleContext, labeled: torch.Tensor, unlabeled: torch.Tensor, iterations: int) -> None:
        opts = self.options
        streams = []
        for tag, features, drop_last in (("labeled", labeled, True), ("unlabeled", unlabeled, False)):
            generator = torch.Generator(device=features.device)
            generator.manual_seed(stream_key("daal", tag, ctx.seed, ctx.cycle) % 2**63)
            streams.append(endless_batches(features, opts["batch_size"], generator, drop_last))
        optimizers = make_optimizers(self.nets, opts["lr"])
        # each term's mean over the first and the last tenth of the game
        game = GameState(f"{self.name} game", self.nets.modules(), optimizers, streams,
                         values={"first": {}, "last": {}})
        self.nets.train()
        tenth = max(1, iterations // 10)

        def iteration(index: int) -> None:
            terms = game_step(self.nets, optimizers, next(streams[0]), next(streams[1]), opts, self.selector_terms)
            for when, active in (("first", index < tenth), ("last", index >= iterations - tenth)):
                if active:
                    window = game.values[when]
                    for name, value in terms.items():
                        window[name] = window.get(name, 0) + value / tenth

        play(game, ctx, iterations, -(-len(unlabeled) // opts["batch_size"]), iteration)
        self.diagnostics = {"game_iterations": iterations,
                            **{f"{name}_{when}": round(float(value), 5) for when, window in game.values.items()
                               for name, value in window.items()}}

    @torch.no_grad()
    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        """The ScoreNet logits of the candidates (eval mode: no dropout): the order of the scores s, without the
        ties of a sigmoid saturated at 0 or 1 in float32, which a trained ScoreNet produces by the thousand."""
        self.nets.train(False)
        logits = self.nets.scorer.logit_and_hidden(self.bank[candidates])[0]
        self.log_scores(torch.sigmoid(logits), self.bank.entropy[self.bank.rows(candidates)], ctx)
        return logits

    def log_scores(self, scores: torch.Tensor, entropies: torch.Tensor, ctx: CycleContext) -> None:
        """The spread of the pool's scores (and the share within 1e-3 of 0 or 1), and how they relate to the task
        model's uncertainty: whether the game produced a ranking at all."""
        quantiles = torch.quantile(scores.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64,
                                                                  device=scores.device))
        summary = torch.stack([scores.mean(), scores.std() if len(scores) > 1 else scores.new_zeros(()),
                               scores.min(), scores.max()]).tolist() + quantiles.tolist()
        names = ("score_mean", "score_std", "score_min", "score_max", "score_p10", "score_p50", "score_p90")
        self.diagnostics.update({name: round(value, 5) for name, value in zip(names, summary)})
        self.diagnostics["score_saturated"] = round(float(((scores < 1e-3) | (scores > 1 - 1e-3)).double().mean()), 4)
        self.diagnostics["score_entropy_spearman"] = round(rank_correlation(scores, entropies), 4)


@register_method
class DAALUncertaintyOnly(DAAL):
    """Fig. 6 "uDis": the informativeness rater trained against uDis alone (no representativeness branch)."""

    name = "daal_udis"
    discriminators = ("uDis",)


@register_method
class DAALRepresentativenessOnly(DAAL):
    """Fig. 6 "rDis": the informativeness rater trained against rDis alone (no uncertainty branch)."""

    name = "daal_rdis"
    discriminators = ("rDis",)
