"""TA-VAAL (Kim et al., CVPR 2021; supplement Alg. 1, Sec. 7; REFERENCES 1.2, T1-T13) and the variants its
comparisons need.

Task learner: the shared trainer trains the task model with the loss-prediction module of
baselines/learning_loss.py attached (the "ranker"), with learning loss v2:
    L_task = CE_mean + eta * BCE(sigmoid(r_i - r_j), 1[l_i > l_j])     over the pairs (i, B-1-i)
the ranker's input detached after epoch 120 of 200 (the module's `detach_fraction` 0.6).
Game, per cycle, new VAE and discriminator, T = (|labeled| + |subset|) x 100 / batch iterations of one VAE step
and one D step on a labeled and a subset batch (the code's train_vaal), each set read pass after pass in a random
order fixed for the game (T10):
    L_VAE = lambda1 [MSE_mean(x^_L, x_L) + beta KL_L + MSE_mean(x^_U, x_U) + beta KL_U]
            + lambda2 [BCE(D(mu_L, r_L), 1) + BCE(D(mu_U, r_U), 1)],   x^ = Dec([z, sigmoid(r)])
    L_D   = BCE(D(mu_L, r_L), 1) + BCE(D(mu_U, r_U), 0)
KL is a mean over batch and dimensions (the code; option `kl: sum`, VAAL's). r is the ranker's output on the
unaugmented image, fixed during the game, so it is computed once per image. At the first iteration the code
feeds r ~ U(0, 1) to both the decoder and D instead (option `first_ranking: ranker` uses the ranker's).
Selection (Alg. 1): the `budget` images of the random subset with the lowest D(mu, r); the rest of the subset
stays in the pool.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from baselines.learning_loss import LearningLoss, LossPredictionModule, block_channels
from core.lib import (STRATEGIES, CycleContext, CycleSizes, CycleWork, Endless, GameState, Strategy, TrainHook,
                      UserError, autocast, build_network, candidate_subset, dataset_spec, new_model, numpy_rng, play,
                      register_method, seed_everything, stream_key)
from ta_vaal.networks import TaskAwareVAE
from vaal.method import VAAL_OPTIONS, VAALFamily, discriminator_loss, game_diagnostics, kl_sum
from vaal.networks import Discriminator

RANKER_OPTIONS = {**LearningLoss.default_options, "ranking_loss": "bce"}     # learning loss v2 (T7), eta = 1
GAME_OPTIONS = {
    **VAAL_OPTIONS,
    "latent_dim": 64,              # supplement Table 1 on CIFAR (T5); the code's VAE() has 32
    "vae_steps": 1, "disc_steps": 1,   # one VAE and one D step per iteration (the code's train_vaal)
    "kl": "mean",                  # the code; "sum" is VAAL's scale (V10)
    "vae_epochs": 0,               # T = (labeled + subset) x vae_epochs / batch per cycle (the code, T4); 0: half
                                   # the task model's epochs (the code's 100 of 200), 100 if it trains by iterations
    "shuffle_vae_loaders": False,  # False: both sets in a per-(seed, cycle) random order fixed for the game, as
                                   # the code's SubsetSequentialSampler over shuffled lists (T10); True: reshuffled
                                   # each pass
    "first_ranking": "uniform",    # iteration 0: r ~ U(0, 1) for decoder and D, as the code; "ranker"
}

CODE_LATENT_DIM = {"fashion_mnist": 28}    # the code's VAE(28, 1, 3) and Discriminator(28); VAE() elsewhere: 32 (T5)


def kl_mean(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) averaged over the batch and the latent dimensions, as TA-VAAL's code."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


KL = {"sum": kl_sum, "mean": kl_mean}


class RankingLossLog(TrainHook):
    """Wraps a loss-prediction hook and appends the mean of its term (eta x L_rank) over each epoch to
    `log` (supplement Fig. 2); one host synchronisation per epoch."""

    resumable_attributes = ("log",)

    def __init__(self, hook: TrainHook, log: list, steps_per_epoch: int):
        self.hook, self.modules, self.log, self.steps = hook, hook.modules, log, steps_per_epoch
        self.total, self.count = 0.0, 0

    def wants_features(self) -> bool:
        return self.hook.wants_features()

    def loss(self, logits, features, blocks, per_sample_loss, progress):
        term = self.hook.loss(logits, features, blocks, per_sample_loss, progress)
        self.total, self.count = self.total + term.detach(), self.count + 1
        if self.count == self.steps:
            self.log.append(round(float(self.total / self.count), 5))
            self.total, self.count = 0.0, 0
        return term


def logged_hooks(strategy: Strategy, hooks: list, ctx: CycleContext) -> list:
    log = strategy.diagnostics.setdefault("ranking_loss_per_epoch", [])
    steps = ctx.trainer.steps_per_epoch(len(ctx.pool.labeled))
    return [RankingLossLog(hook, log, steps) for hook in hooks]


def endless_ranked(source, indices: np.ndarray, ranking: torch.Tensor, batch_size: int,
                   generator: torch.Generator | None) -> Endless:
    """(unaugmented images, ranker outputs) batches of `indices`, pass after pass: in the given order when
    `generator` is None (the code's sequential samplers), reshuffled at each pass otherwise."""
    return Endless(lambda: ((images, ranking[chosen]) for images, chosen in
                            source.batches(indices, batch_size, augment=False, shuffle=generator)), generator)


def game_order(count: int, tag: str, seed: int, cycle: int) -> np.ndarray:
    """The positions, in reading order, of a set of `count` indices that the game reads: a random order fixed
    per (set, seed, cycle). The code shuffles its index lists (`random.shuffle` in main.py) before reading them
    sequentially; the pool keeps them sorted, and on data stored class by class sorted batches would hold one
    class each (T10)."""
    return numpy_rng("ta-vaal-game-order", tag, seed, cycle).permutation(count)


class TaskAwareGame(VAALFamily):
    """The TA-VAAL game and selection; `task_aware = False` is VAAL inside TA-VAAL's protocol (T2)."""

    default_options = {**GAME_OPTIONS, **RANKER_OPTIONS}
    task_aware = True
    kl_reductions = tuple(KL)

    def __init__(self, options=None):
        super().__init__(options)
        if self.options["first_ranking"] not in ("uniform", "ranker"):
            raise UserError(f"method_options.{self.name}.first_ranking='{self.options['first_ranking']}' is not "
                            "one of uniform, ranker")
        self.ranker = None
        if self.task_aware:
            self.ranker = LearningLoss({key: self.options[key] for key in LearningLoss.default_options})

    def vae_size(self, side: int) -> int:
        return side if side in (28, 32) else self.options["large_image_size"]

    def build_modules(self, channels: int, size: int, width: float) -> dict:
        d, ranked = self.options["latent_dim"], int(self.task_aware)
        return {"VAE": TaskAwareVAE(d, channels, size, width, ranked=self.task_aware),
                "discriminator": Discriminator(d + ranked, self.options["disc_layers"])}

    def vae_side(self, config) -> int:
        spec = dataset_spec(config.data.dataset)
        return spec.image_size[0] if spec.small_images else self.options["large_image_size"]

    def networks(self, config, num_classes: int) -> dict:
        dataset, width, size = config.data.dataset, config.model.width, self.vae_side(config)
        channels = dataset_spec(dataset).channels
        found = self.build_modules(channels, size, width)
        if self.task_aware:
            task = build_network(config.model.arch, num_classes, channels, width)
            found = {"ranker (loss-prediction module)":
                     LossPredictionModule(block_channels(task), self.options["hidden"]), **found}
        code = CODE_LATENT_DIM.get(dataset, 32)
        other = code if self.options["latent_dim"] != code else 64
        alternative = type(self)({"latent_dim": other}).build_modules(channels, size, width)["VAE"]
        return {**found, f"VAE with latent_dim={other} (option)": alternative}

    def network_inputs(self, config, num_classes: int) -> dict[str, tuple]:
        """The decoder and D also read each image's ranking r, one number."""
        side, ranked = self.vae_side(config), int(self.task_aware)
        image = (dataset_spec(config.data.dataset).channels, side, side)
        return {"VAE": (image, ()) if ranked else (image,), "discriminator": ((self.options["latent_dim"] + ranked,),)}

    def game_iterations(self, config, labeled: int, candidates: int, steps_per_epoch: int) -> int:
        """T = (labeled + subset) x vae_epochs / batch (the code, T4)."""
        opts = self.options
        epochs = opts["vae_epochs"] or (max(1, config.train.epochs // 2) if config.train.epochs else 100)
        return opts["iterations"] or (labeled + candidates) * epochs // (opts["batch_size"] or config.train.batch_size)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """VAAL's game, plus the ranker's task-model passes over the labeled set and the subset before the game
        and again when scoring."""
        work = super().cycle_work(config, num_classes, cycle)
        if self.task_aware and cycle.candidates:
            work.task_inferred += cycle.labeled + 2 * cycle.candidates + min(cycle.labeled, 5000)
        return work

    def train_hooks(self, model, ctx: CycleContext) -> list:
        if not self.task_aware:
            return []
        return logged_hooks(self, self.ranker.train_hooks(model, ctx), ctx)

    def rankings(self, model, ctx: CycleContext, indices: np.ndarray) -> torch.Tensor:
        """The ranker's outputs on the unaugmented images (zeros for VAAL, which has no ranker)."""
        if not self.task_aware:
            return torch.zeros(len(indices), device=ctx.device)
        return self.ranker.score(model, ctx, indices)

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        config, opts = ctx.config, self.options
        side = ctx.dataset.train.images.shape[1] if ctx.dataset.in_memory else config.data.image_size
        self.size, self.task_model = self.vae_size(side), model
        seed_everything(self.name, ctx.seed, ctx.cycle)
        modules = {k: m.to(ctx.device)
                   for k, m in self.build_modules(ctx.dataset.channels, self.size, config.model.width).items()}
        self.vae, self.disc = modules["VAE"], modules["discriminator"]
        labeled = ctx.pool.labeled
        subset = candidate_subset(ctx.pool.unlabeled, config.protocol.subset, ctx.seed, ctx.cycle)
        self.batch_size = opts["batch_size"] or config.train.batch_size
        iterations = self.game_iterations(config, len(labeled), len(subset), 0)
        ranking = torch.zeros(len(ctx.dataset.train), device=ctx.device)
        ranking[torch.as_tensor(labeled, device=ctx.device)] = self.rankings(model, ctx, labeled)
        ranking[torch.as_tensor(subset, device=ctx.device)] = self.rankings(model, ctx, subset)
        self.train_game(ctx, *self.game_streams(ctx, labeled, subset, ranking), iterations)

    def game_streams(self, ctx: CycleContext, labeled: np.ndarray, subset: np.ndarray, ranking: torch.Tensor):
        """The game's endless labeled and subset batches, each with its images' entries of `ranking`."""
        streams = []
        for tag, indices in (("labeled", labeled), ("unlabeled", subset)):
            generator = None
            if self.options["shuffle_vae_loaders"]:
                generator = torch.Generator(device=ctx.device)
                generator.manual_seed(stream_key(self.name, tag, ctx.seed, ctx.cycle) % 2**63)
            ordered = indices[game_order(len(indices), tag, ctx.seed, ctx.cycle)]
            streams.append(endless_ranked(ctx.source, ordered, ranking, self.batch_size, generator))
        return streams

    def draw(self, labeled, unlabeled, first: bool, generator: torch.Generator):
        """Next batches as (x_L, x_U, decoder inputs (r_L, r_U), discriminator inputs (r_L, r_U))."""
        (x_l, r_l), (x_u, r_u) = next(labeled), next(unlabeled)
        x_l, x_u = self.vae_input(x_l), self.vae_input(x_u)
        if first and self.options["first_ranking"] == "uniform":
            r_l = torch.rand(len(x_l), generator=generator, device=generator.device).to(x_l.device)
            r_u = torch.rand(len(x_u), generator=generator, device=generator.device).to(x_u.device)
            return x_l, x_u, (r_l, r_u), (r_l, r_u)
        return x_l, x_u, (torch.sigmoid(r_l), torch.sigmoid(r_u)), (r_l, r_u)

    def discriminate(self, mu: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """D(mu, r) in float32 (vaal/networks.py), r not rounded to bfloat16 under autocast."""
        return self.disc(torch.cat([mu.float(), r.float()[:, None]], 1) if self.task_aware else mu)

    def game_epoch(self, ctx: CycleContext) -> int:
        """The game's iterations per epoch of its schedule: (labeled + subset) / batch (T4)."""
        subset = candidate_subset(ctx.pool.unlabeled, ctx.config.protocol.subset, ctx.seed, ctx.cycle)
        return (len(ctx.pool.labeled) + len(subset)) // self.batch_size

    def train_game(self, ctx: CycleContext, labeled: Endless, unlabeled: Endless, iterations: int) -> None:
        opts, amp = self.options, ctx.config.train.amp
        optimizers = {"VAE": torch.optim.Adam(self.vae.parameters(), lr=opts["vae_lr"]),
                      "discriminator": torch.optim.Adam(self.disc.parameters(), lr=opts["disc_lr"])}
        generator = torch.Generator(device=ctx.device)
        generator.manual_seed(stream_key(self.name, "first-ranking", ctx.seed, ctx.cycle) % 2**63)
        # summed losses: transductive, adversarial, discriminator
        game = GameState(f"{self.name} game", {"VAE": self.vae, "discriminator": self.disc}, optimizers,
                         [labeled, unlabeled], [generator], {"totals": torch.zeros(3, device=ctx.device)})
        self.vae.train()
        self.disc.train()

        def iteration(index: int) -> None:
            totals = game.values["totals"]
            for step in range(opts["vae_steps"]):       # every VAE step reads new batches; D the last ones
                x_l, x_u, decoder_r, disc_r = self.draw(labeled, unlabeled, index == 0 and step == 0, generator)
                transductive, adversarial = self.vae_losses(x_l, x_u, decoder_r, disc_r, amp)
                loss = opts["lambda1"] * transductive + opts["lambda2"] * adversarial
                optimizers["VAE"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["VAE"].step()
                totals[:2] += torch.stack([transductive.detach(), adversarial.detach()])
            for step in range(opts["disc_steps"]):
                if step > 0:
                    x_l, x_u, decoder_r, disc_r = self.draw(labeled, unlabeled, False, generator)
                with torch.no_grad(), autocast(ctx.device, amp):
                    mu_l, mu_u = self.vae.encode(x_l)[0], self.vae.encode(x_u)[0]
                loss = discriminator_loss(self.discriminate(mu_l, disc_r[0]), self.discriminate(mu_u, disc_r[1]))
                optimizers["discriminator"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["discriminator"].step()
                totals[2] += loss.detach()

        play(game, ctx, iterations, self.game_epoch(ctx), iteration)
        self.diagnostics.update(game_diagnostics(game.values["totals"], iterations * opts["vae_steps"],
                                                 iterations * opts["disc_steps"], iterations))

    def vae_losses(self, x_l, x_u, decoder_r, disc_r, amp: bool):
        """As VAAL's: the VAE's passes under autocast when `amp`, the losses and D in float32 outside it."""
        kl, beta = KL[self.options["kl"]], self.options["beta"]
        with autocast(x_l.device, amp):
            outputs = self.vae(x_l, decoder_r[0]), self.vae(x_u, decoder_r[1])
        (recon_l, _, mu_l, logvar_l), (recon_u, _, mu_u, logvar_u) = [[t.float() for t in out] for out in outputs]
        transductive = F.mse_loss(recon_l, x_l) + beta * kl(mu_l, logvar_l) + \
            F.mse_loss(recon_u, x_u) + beta * kl(mu_u, logvar_u)
        d_l, d_u = self.discriminate(mu_l, disc_r[0]), self.discriminate(mu_u, disc_r[1])
        adversarial = F.binary_cross_entropy(d_l, torch.ones_like(d_l)) + F.binary_cross_entropy(d_u, torch.ones_like(d_u))
        return transductive, adversarial

    @torch.no_grad()
    def discriminator_outputs(self, ctx: CycleContext, indices: np.ndarray, tag: str,
                              train_mode: bool | None = None) -> torch.Tensor:
        """D(mu, r) per image of `indices`, in their order; r from the task model and ranker in eval mode, mu from
        the encoder in eval mode, or with `sample_in_train_mode` in train mode on the batches the code scores:
        the game's batch size, in the game's order of the set `tag` names (the same as the game's subset batches
        for the candidates), since train-mode BatchNorm normalises each batch by its own statistics."""
        train_mode = self.options["sample_in_train_mode"] if train_mode is None else train_mode
        positions = game_order(len(indices), tag, ctx.seed, ctx.cycle) if train_mode else np.arange(len(indices))
        ranking = self.rankings(self.task_model, ctx, indices)[torch.as_tensor(positions, device=ctx.device)]
        batch = self.batch_size if train_mode else ctx.eval_batch_size
        outputs, start = [], 0
        with self.vae_mode(train_mode):
            for images, _ in ctx.source.batches(indices[positions], batch):
                with autocast(ctx.device, ctx.config.train.amp):
                    mu = self.vae.encode(self.vae_input(images))[0]
                    outputs.append(self.discriminate(mu, ranking[start:start + len(images)]))
                start += len(images)
        found = torch.cat(outputs)
        return found[torch.as_tensor(np.argsort(positions), device=found.device)]

    def save_reconstructions(self, ctx: CycleContext) -> None:
        """Not saved: the decoder needs each image's ranking; the diagnostics show a collapsed game."""


@register_method
class TAVAAL(TaskAwareGame):
    name = "ta_vaal"


@register_method
class VAALInTAVAAL(TaskAwareGame):
    """VAAL as TA-VAAL's baseline (T2): TA-VAAL without r and without the ranker: the same T, labeled +
    subset loaders, latent size, KL mean, 1:1 steps and ResNet-18 task learner (no loss-prediction module, T1)."""

    name = "vaal_in_ta_vaal"
    default_options = GAME_OPTIONS
    task_aware = False


class LoggedLearningLoss(LearningLoss):
    """LL4AL with the per-epoch ranking loss in `diagnostics` (supplement Fig. 2)."""

    def train_hooks(self, model, ctx: CycleContext) -> list:
        return logged_hooks(self, super().train_hooks(model, ctx), ctx)


@register_method
class LearningLossV1(LoggedLearningLoss):
    name = "learning_loss_v1"             # the original margin loss


@register_method
class LearningLossV2(LoggedLearningLoss):
    name = "learning_loss_v2"             # TA-VAAL's BCE ranking loss
    default_options = {**LearningLoss.default_options, "ranking_loss": "bce"}


class Wrapped(Strategy):
    """A registered method run unchanged except for what a subclass overrides; options are the method's."""

    base_class: type[Strategy]

    def __init__(self, options=None):
        self.base = self.base_class(options)
        super().__init__(options)

    @property
    def diagnostics(self) -> dict:
        return self.base.diagnostics

    @diagnostics.setter
    def diagnostics(self, value: dict) -> None:
        self.base.diagnostics = value

    def networks(self, config, num_classes: int) -> dict:
        return self.base.networks(config, num_classes)

    def adjust_config(self, config, train_size: int):
        return self.base.adjust_config(config, train_size)

    def prepare_model(self, model, ctx: CycleContext):
        return self.base.prepare_model(model, ctx)

    def train_hooks(self, model, ctx: CycleContext) -> list:
        return self.base.train_hooks(model, ctx)

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        self.base.prepare_selection(model, ctx)

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        return self.base.select(model, ctx, candidates, budget)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        return self.base.cycle_work(config, num_classes, cycle)


class WithLossPrediction(Wrapped):
    """The code's behaviour for a method without a ranker (T1, `lpm_for_all_methods`): a loss-prediction
    module trained jointly with the task model (learning loss v2, eta = 1, detached after epoch 120 of 200),
    its gradient reaching the backbone, its output never used."""

    def train_hooks(self, model, ctx: CycleContext) -> list:
        ranker = LearningLoss(RANKER_OPTIONS)
        return self.base.train_hooks(model, ctx) + logged_hooks(self, ranker.train_hooks(model, ctx), ctx)


class IndependentLearner(Wrapped):
    """Supplement Sec. 2 / Fig. 1: the tested task model trains without the ranker; the selection comes from a
    second learner trained with it, from the same initial weights and batch order as the method's own run, so
    the labeled sets equal that run's."""

    def train_hooks(self, model, ctx: CycleContext) -> list:
        return []

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        ranked = self.base.prepare_model(new_model(ctx.config, ctx.dataset, ctx.seed, ctx.cycle, ctx.device), ctx)
        generator = torch.Generator(device=ctx.device)
        generator.manual_seed(stream_key("train", ctx.seed, ctx.cycle) % 2**63)
        ctx.trainer.fit(ranked, ctx.source, ctx.pool.labeled, ctx.answers, ctx.pool.validation, ctx.answers,
                        hooks=self.base.train_hooks(ranked, ctx), generator=generator,
                        desc=f"{self.name} seed {ctx.seed} cycle {ctx.cycle} learner with ranker")
        self.ranked_model = ranked
        self.base.prepare_selection(ranked, ctx)

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        return self.base.select(self.ranked_model, ctx, candidates, budget)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """The method's work, plus the second learner trained before each selection."""
        work = self.base.cycle_work(config, num_classes, cycle)
        work.task_trainings += 1 if cycle.candidates else 0
        return work


def variant(wrapper: type[Wrapped], base_name: str, suffix: str) -> type[Wrapped]:
    base = STRATEGIES[base_name]
    return register_method(type(f"{base.__name__}{wrapper.__name__}", (wrapper,),
                         {"name": f"{base_name}_{suffix}", "base_class": base,
                          "default_options": base.default_options, "__doc__": wrapper.__doc__}))


LPM_FOR_ALL = ("random", "mc_dropout", "coreset", "vaal", "vaal_in_ta_vaal")
INDEPENDENT = ("learning_loss", "ta_vaal")
for method in LPM_FOR_ALL:
    variant(WithLossPrediction, method, "lpm")
for method in INDEPENDENT:
    variant(IndependentLearner, method, "independent")
