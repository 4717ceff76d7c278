"""VAAL (Sinha et al. 2019, Alg. 1-2) and its ablations (Sec. 5.1, Fig. 4), as selection strategies.

Per cycle, after the shared trainer has trained the task model, a new VAE and discriminator play the
adversarial game for T iterations (T = the task model's iterations, 50,000 x 100 / 64 by default: V3, V4).
Each iteration takes `vae_steps` (2, V5) VAE steps and `disc_steps` (1) discriminator steps:
    L_VAE = lambda1 [MSE_mean(x^_L, x_L) + beta KL_sum_L + MSE_mean(x^_U, x_U) + beta KL_sum_U]
            + lambda2 [BCE(D(mu_L), 1) + BCE(D(mu_U), 1)]                     (Eq. 1, 2, 4; KL summed: V10)
    L_D   = BCE(D(mu_L), 1) + BCE(D(mu_U), 0)                                 (Eq. 3)
The first VAE step reuses the labeled batch and draws an unlabeled one; every further step draws fresh
batches of both, and the discriminator uses the last ones, as the official code. The task model and the VAE/D
never interact, so training them one after the other equals the code's interleaved loop.
Sampling (Alg. 2): the `budget` candidates with the lowest D(mu), the VAE in eval mode (V9); with
`sample_in_train_mode`, as the official sampler: the VAE in train mode, on shuffled, flipped batches of the game's
batch size (train-mode BatchNorm normalises each batch by its own statistics, so the batching changes the scores).
With `health_check`, each selection also logs how well the game separates a labeled set that lacks some classes
from the unlabeled pool, scored both ways (vaal/README.md, "Health check").
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from core.lib import (CycleContext, CycleSizes, CycleWork, Endless, GameState, NetworkUse, Pool, RunFolder,
                      ScoringStrategy, UserError, autocast, dataset_spec, is_main, play, register_method,
                      seed_everything, stream_key)
from vaal.networks import VAE, Discriminator

VAAL_OPTIONS = {
    "latent_dim": 32, "vae_lr": 5e-4, "disc_lr": 5e-4, "lambda1": 1.0, "lambda2": 1.0, "beta": 1.0,
    "vae_steps": 2, "disc_steps": 1, "disc_layers": 5,
    "iterations": 0,               # 0: as many as the task model's schedule
    "batch_size": 0,               # 0: the task model's batch size
    "sample_in_train_mode": False,  # score as the official sampler: VAE in train mode, shuffled flipped batches (V9)
    "kl": "sum",                   # "sum" over batch and dimensions (the code, V10) or "per_sample" (batch mean)
    "health_check": False,         # log the health-check diagnostics for both scoring modes (vaal/README.md)
    "large_image_size": 64,        # inputs above 32 px are resized to this for the VAE only (V13)
}


def kl_sum(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the batch and the latent dimensions, as the official code (V10)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def discriminator_loss(d_labeled: torch.Tensor, d_unlabeled: torch.Tensor) -> torch.Tensor:
    """L_D = BCE(D(labeled), 1) + BCE(D(unlabeled), 0) (Eq. 4)."""
    return F.binary_cross_entropy(d_labeled, torch.ones_like(d_labeled)) + \
        F.binary_cross_entropy(d_unlabeled, torch.zeros_like(d_unlabeled))


def game_diagnostics(totals: torch.Tensor, vae_steps: int, disc_steps: int, iterations: int) -> dict:
    """The game's loss terms (summed: transductive, adversarial, discriminator) as means per optimizer step, not
    per iteration, which may hold several VAE or D steps."""
    means = (totals / torch.tensor([max(vae_steps, 1)] * 2 + [max(disc_steps, 1)], device=totals.device)).tolist()
    return {"vae_transductive_loss": round(means[0], 5), "vae_adversarial_loss": round(means[1], 5),
            "discriminator_loss": round(means[2], 5), "game_iterations": iterations}


def wasserstein_to_labeled(mu: torch.Tensor, logvar: torch.Tensor, labeled_mu: torch.Tensor,
                           labeled_var: torch.Tensor) -> torch.Tensor:
    """Eq. 5 for diagonal Gaussians: sqrt(||mu_i - mu_j||^2 + ||Sigma_i^1/2 - Sigma_j^1/2||_F^2)."""
    spread = (torch.exp(0.5 * logvar) - labeled_var.sqrt()).pow(2).sum(1)
    return ((mu - labeled_mu).pow(2).sum(1) + spread).sqrt()


def labeled_distribution(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and per-dimension variance of the labeled set's latent distribution (moment-matched mixture)."""
    mean = mu.mean(0)
    return mean, (logvar.exp() + mu.pow(2)).mean(0) - mean.pow(2)


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """P(score of a random positive > score of a random negative), ties counted half (Mann-Whitney U)."""
    scores = torch.cat([positive, negative])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, device=scores.device, dtype=scores.dtype)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    rank_sums = torch.zeros(len(counts), device=scores.device, dtype=scores.dtype).index_add_(0, inverse, ranks)
    ranks = (rank_sums / counts)[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def endless(source, indices: np.ndarray, batch_size: int, generator: torch.Generator, drop_last: bool) -> Endless:
    """The official code's ever-cycling loaders: reshuffled at each pass, flipped like the task model's data."""
    return Endless(lambda: (images for images, _ in source.batches(indices, batch_size, augment=True,
                                                                   shuffle=generator, drop_last=drop_last)),
                   generator)


class VAALFamily(ScoringStrategy):
    """VAAL and its ablations differ only in which modules train and what is scored."""

    default_options = VAAL_OPTIONS
    trains_vae = True
    adversarial = True
    discriminates = "latent"       # "latent", "pixels" or None
    kl_reductions = ("sum", "per_sample")

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        if self.options["kl"] not in self.kl_reductions:
            raise UserError(f"method_options.{self.name}.kl='{self.options['kl']}' is not one of "
                            f"{', '.join(self.kl_reductions)}")

    def vae_input(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] == (self.size, self.size):
            return images
        return F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True,
                             align_corners=False)

    def build_modules(self, channels: int, size: int, width: float) -> dict:
        found = {}
        if self.trains_vae or self.discriminates == "latent":
            found["VAE"] = VAE(self.options["latent_dim"], channels, size, width)
        if self.discriminates:
            inputs = self.options["latent_dim"] if self.discriminates == "latent" else channels * size * size
            found["discriminator"] = Discriminator(inputs, self.options["disc_layers"])
        return found

    def vae_side(self, config) -> int:
        return 32 if dataset_spec(config.data.dataset).small_images else self.options["large_image_size"]

    def networks(self, config, num_classes: int) -> dict:
        channels = dataset_spec(config.data.dataset).channels
        return self.build_modules(channels, self.vae_side(config), config.model.width)

    def network_inputs(self, config, num_classes: int) -> dict[str, tuple]:
        """forward()'s per-sample input shapes of the VAE and the discriminator."""
        side = self.vae_side(config)
        image = (dataset_spec(config.data.dataset).channels, side, side)
        return {"VAE": (image,), "discriminator": ((self.options["latent_dim"],) if self.discriminates == "latent"
                                                   else image,)}

    def game_iterations(self, config, labeled: int, candidates: int, steps_per_epoch: int) -> int:
        """T: the option, else as many as the task model's iterations (V3, V4)."""
        return self.options["iterations"] or config.train.iterations or config.train.epochs * steps_per_epoch

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """Per game iteration, each VAE step passes a labeled and an unlabeled batch through the VAE (and D when
        adversarial), forward and backward; each D step encodes both batches (priced as whole VAE passes) and
        trains D on them. Scoring passes the candidates and up to 5,000 labeled images through both."""
        if not cycle.candidates:
            return CycleWork()
        opts, inputs = self.options, self.network_inputs(config, num_classes)
        batches = 2 * (opts["batch_size"] or config.train.batch_size) * \
            self.game_iterations(config, cycle.labeled, cycle.candidates, cycle.steps_per_epoch)
        vae_steps, shown = opts["vae_steps"] if self.trains_vae else 0, cycle.candidates + min(cycle.labeled, 5000)
        uses = {}
        if self.trains_vae or self.discriminates == "latent":
            uses["VAE"] = NetworkUse(inputs["VAE"], trained=vae_steps * batches,
                                     inferred=opts["disc_steps"] * batches + shown)
        if self.discriminates:
            uses["discriminator"] = NetworkUse(inputs["discriminator"], inferred=shown,
                                               trained=(vae_steps * self.adversarial + opts["disc_steps"]) * batches)
        return CycleWork(scored=cycle.candidates, networks=uses)

    def prepare_selection(self, model, ctx: CycleContext) -> None:
        config, opts, train = ctx.config, self.options, ctx.dataset.train
        # files: the training crop, or whole images (image_size 0, DAAL's segmentation), larger than 32
        side = train.images.shape[1] if ctx.dataset.in_memory else config.data.image_size or opts["large_image_size"]
        self.size = 32 if side <= 32 else opts["large_image_size"]
        seed_everything("vaal", ctx.seed, ctx.cycle)
        modules = {k: m.to(ctx.device)
                   for k, m in self.build_modules(ctx.dataset.channels, self.size, config.model.width).items()}
        self.vae, self.disc = modules.get("VAE"), modules.get("discriminator")
        self.batch_size = batch = opts["batch_size"] or config.train.batch_size
        iterations = self.game_iterations(config, len(ctx.pool.labeled), len(ctx.pool.unlabeled),
                                          ctx.trainer.steps_per_epoch(len(ctx.pool.labeled)))
        streams = []
        for tag, indices, drop_last in (("labeled", ctx.pool.labeled, True), ("unlabeled", ctx.pool.unlabeled, False)):
            generator = torch.Generator(device=ctx.device)
            generator.manual_seed(stream_key("vaal", tag, ctx.seed, ctx.cycle) % 2**63)
            streams.append(endless(ctx.source, indices, batch, generator, drop_last))
        self.train_game(ctx, *streams, iterations)
        self.last_batch = next(streams[0])

    def game_epoch(self, ctx: CycleContext) -> int:
        """The game's iterations per epoch of its schedule: the task model's steps per epoch (V3, V4)."""
        return ctx.trainer.steps_per_epoch(len(ctx.pool.labeled))

    def train_game(self, ctx: CycleContext, labeled: Endless, unlabeled: Endless, iterations: int) -> None:
        opts, amp = self.options, ctx.config.train.amp
        modules = {name: module for name, module in (("VAE", self.vae), ("discriminator", self.disc))
                   if module is not None}
        optimizers = {}
        if self.trains_vae:
            optimizers["VAE"] = torch.optim.Adam(self.vae.parameters(), lr=opts["vae_lr"])
        if self.disc is not None:
            optimizers["discriminator"] = torch.optim.Adam(self.disc.parameters(), lr=opts["disc_lr"])
        vae_steps = opts["vae_steps"] if self.trains_vae else 0
        disc_steps = opts["disc_steps"] if self.disc is not None else 0
        # summed losses: transductive, adversarial, discriminator
        game = GameState(f"{self.name} game", modules, optimizers, [labeled, unlabeled],
                         values={"totals": torch.zeros(3, device=ctx.device)})
        if self.vae is not None:
            self.vae.train(self.trains_vae)

        def iteration(_: int) -> None:
            totals = game.values["totals"]
            x_l, x_u = self.vae_input(next(labeled)), self.vae_input(next(unlabeled))
            for step in range(vae_steps):
                if step > 0:
                    x_l, x_u = self.vae_input(next(labeled)), self.vae_input(next(unlabeled))
                transductive, adversarial = self.vae_losses(x_l, x_u, amp)
                loss = opts["lambda1"] * transductive + opts["lambda2"] * adversarial
                optimizers["VAE"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["VAE"].step()
                totals[:2] += torch.stack([transductive.detach(), adversarial.detach()])
            for step in range(disc_steps):
                if step > 0:
                    x_l, x_u = self.vae_input(next(labeled)), self.vae_input(next(unlabeled))
                with autocast(ctx.device, amp):
                    inputs = self.disc_input(x_l), self.disc_input(x_u)
                loss = discriminator_loss(self.disc(inputs[0]), self.disc(inputs[1]))     # float32, autocast off
                optimizers["discriminator"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["discriminator"].step()
                totals[2] += loss.detach()

        play(game, ctx, iterations, self.game_epoch(ctx), iteration)
        self.diagnostics = game_diagnostics(game.values["totals"], vae_steps * iterations, disc_steps * iterations,
                                            iterations)

    def vae_losses(self, x_l, x_u, amp: bool):
        """(transductive, adversarial): the VAE's passes under autocast when `amp`, the losses and D in float32
        outside it (core/lib/evaluation.py)."""
        with autocast(x_l.device, amp):
            outputs = self.vae(x_l), self.vae(x_u)
        (recon_l, _, mu_l, logvar_l), (recon_u, _, mu_u, logvar_u) = [[t.float() for t in out] for out in outputs]
        beta = self.options["beta"]
        transductive = F.mse_loss(recon_l, x_l) + beta * self.kl(mu_l, logvar_l) + \
            F.mse_loss(recon_u, x_u) + beta * self.kl(mu_u, logvar_u)
        if not self.adversarial:
            return transductive, torch.zeros((), device=x_l.device)
        d_l, d_u = self.disc(mu_l), self.disc(mu_u)
        adversarial = F.binary_cross_entropy(d_l, torch.ones_like(d_l)) + F.binary_cross_entropy(d_u, torch.ones_like(d_u))
        return transductive, adversarial

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """The code's KL, summed over the batch (V10), or with `kl: per_sample` its mean over the batch."""
        return kl_sum(mu, logvar) / (len(mu) if self.options["kl"] == "per_sample" else 1)

    def disc_input(self, images: torch.Tensor) -> torch.Tensor:
        if self.discriminates == "pixels":
            return images
        with torch.no_grad():
            return self.vae.encode(images)[0]

    def scoring_batches(self, ctx: CycleContext, indices: np.ndarray, train_mode: bool, tag: str):
        """(VAE-sized images, their positions in `indices`). For train-mode scoring, batches as the official
        sampler draws them, shuffled and flipped, of the game's batch size; otherwise ordered and unflipped."""
        wanted = torch.as_tensor(np.asarray(indices), dtype=torch.long, device=ctx.device)
        order = wanted.argsort()
        if train_mode:
            generator = torch.Generator(device=ctx.device)
            generator.manual_seed(stream_key("vaal", "score", tag, ctx.seed, ctx.cycle) % 2**63)
            batches = ctx.source.batches(indices, self.batch_size, augment=True, shuffle=generator)
        else:
            batches = ctx.source.batches(indices, ctx.eval_batch_size)
        for images, chosen in batches:
            yield self.vae_input(images), order[torch.searchsorted(wanted[order], chosen.to(wanted.device))]

    @contextmanager
    def vae_mode(self, train_mode: bool):
        """The VAE in train mode (BatchNorm on each batch's statistics, as the official sampler) or eval mode
        (V9), D in eval mode; the BatchNorm running statistics a train-mode pass updates are put back after."""
        saved = None
        if self.vae is not None:
            saved = {name: buffer.clone() for name, buffer in self.vae.named_buffers()}
            self.vae.train(train_mode)
        if self.disc is not None:
            self.disc.eval()
        try:
            yield
        finally:
            if saved is not None:
                for name, buffer in self.vae.named_buffers():
                    buffer.copy_(saved[name])

    @torch.no_grad()
    def pool_outputs(self, ctx: CycleContext, indices: np.ndarray, train_mode: bool, tag: str,
                     details: bool = False) -> dict[str, torch.Tensor]:
        """Per image of `indices`, in their order: `mu`, `logvar` and, with a discriminator, D's output `d`;
        with `details` also the reconstruction MSE of decoder(mu) (`recon`)."""
        parts: dict[str, list] = {}
        positions = []
        with self.vae_mode(train_mode):
            for images, where in self.scoring_batches(ctx, indices, train_mode, tag):
                with autocast(ctx.device, ctx.config.train.amp):
                    found = {}
                    if self.vae is not None:
                        found["mu"], found["logvar"] = self.vae.encode(images)
                        if details:
                            found["recon"] = (self.vae.decoder(found["mu"]).float() - images).pow(2).flatten(1).mean(1)
                    if self.disc is not None:
                        found["d"] = self.disc(found["mu"] if self.discriminates == "latent" else images)
                for key, value in found.items():
                    parts.setdefault(key, []).append(value.float())
                positions.append(where)
        inverse = torch.cat(positions).argsort()
        return {key: torch.cat(values)[inverse] for key, values in parts.items()}

    def latents(self, ctx: CycleContext, indices: np.ndarray, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        found = self.pool_outputs(ctx, indices, self.options["sample_in_train_mode"], tag)
        return found["mu"], found["logvar"]

    def discriminator_outputs(self, ctx: CycleContext, indices: np.ndarray, tag: str,
                              train_mode: bool | None = None) -> torch.Tensor:
        train_mode = self.options["sample_in_train_mode"] if train_mode is None else train_mode
        return self.pool_outputs(ctx, indices, train_mode, tag)["d"]

    def shown_labeled(self, ctx: CycleContext) -> np.ndarray:
        """Up to 5,000 labeled images, to compare D's outputs on labeled and unlabeled images."""
        return ctx.rng.choice(ctx.pool.labeled, min(len(ctx.pool.labeled), 5000), replace=False)

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        """Higher is selected first: minus D's output, so the `budget` lowest D(mu) are taken (Alg. 2)."""
        unlabeled = self.discriminator_outputs(ctx, candidates, "unlabeled")
        labeled = self.discriminator_outputs(ctx, self.shown_labeled(ctx), "labeled")
        summary = torch.stack([labeled.mean(), unlabeled.mean(), roc_auc(labeled, unlabeled)]).tolist()
        self.diagnostics.update({"disc_mean_labeled": round(summary[0], 5), "disc_mean_unlabeled": round(summary[1], 5),
                                 "disc_auc_labeled_vs_unlabeled": round(summary[2], 5)})
        self.save_reconstructions(ctx)
        return -unlabeled

    def select(self, model, ctx: CycleContext, candidates: np.ndarray, budget: int) -> np.ndarray:
        chosen = super().select(model, ctx, candidates, budget)
        if self.options["health_check"]:
            self.diagnostics.update(self.health_check(ctx, candidates, budget))
        return chosen

    def health_check(self, ctx: CycleContext, candidates: np.ndarray, budget: int) -> dict:
        """How well the trained game tells the labeled set from the pool, scored with the VAE in eval mode (V9)
        and in train mode (the official sampler): D's AUC (labeled vs unlabeled), the share of the held-out
        classes (those absent from the cycle-0 labeled set) among the `budget` lowest D(mu) against their share
        of the candidates, the mean |mu| and the reconstruction MSE of decoder(mu) over the candidates.
        `mean_image_mse` is the MSE of predicting every candidate by their mean image: a VAE that reconstructs
        no better has collapsed to the mean."""
        targets = np.asarray(ctx.dataset.train.targets)
        initial = RunFolder(ctx.folder).pool(0) if ctx.folder is not None else None
        labeled0 = Pool.load(initial).labeled if initial is not None and initial.exists() else ctx.pool.labeled
        held_out = torch.as_tensor(~np.isin(targets[candidates], targets[labeled0]), device=ctx.device)
        shown = self.shown_labeled(ctx)
        found = {"held_out_base_rate": held_out.float().mean()}
        for mode, train_mode in (("eval", False), ("train", True)):
            pool = self.pool_outputs(ctx, candidates, train_mode, "unlabeled", details=True)
            labeled = self.discriminator_outputs(ctx, shown, "labeled", train_mode)
            lowest = torch.topk(-pool["d"], budget).indices
            found.update({f"{mode}_auc": roc_auc(labeled, pool["d"]),
                          f"{mode}_held_out_share": held_out[lowest].float().mean()})
            if "mu" in pool:     # not for the D-on-pixels ablation
                found.update({f"{mode}_mean_abs_mu": pool["mu"].abs().mean(), f"{mode}_recon_mse": pool["recon"].mean()})
        images = torch.cat([images for images, _ in self.scoring_batches(ctx, candidates, False, "unlabeled")])
        found["mean_image_mse"] = (images - images.mean(0)).pow(2).mean()
        return {f"health_{key}": round(float(value), 5) for key, value in found.items()}

    def save_reconstructions(self, ctx: CycleContext) -> None:
        if self.vae is None or ctx.folder is None or not is_main():
            return
        import torchvision

        with torch.no_grad(), self.vae_mode(self.options["sample_in_train_mode"]):
            images = self.vae_input(self.last_batch[:8])
            recon = self.vae(images)[0]
        mean = torch.tensor(ctx.dataset.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(ctx.dataset.std, device=images.device).view(1, -1, 1, 1)
        grid = (torch.cat([images, recon.float()]) * std + mean).clamp(0, 1)
        path = RunFolder(ctx.folder).method_file(f"{self.name}_reconstructions", ctx.cycle, ".png")
        torchvision.utils.save_image(grid.cpu(), path, nrow=len(images))


@register_method
class VAAL(VAALFamily):
    name = "vaal"


@register_method
class PixelDiscriminator(VAALFamily):
    """Ablation 1 (Sec. 5.1): no VAE, the discriminator learns labeled vs unlabeled on the pixels."""

    name = "vaal_pixel_disc"
    trains_vae = False
    discriminates = "pixels"


@register_method
class FrozenVAEDiscriminator(VAALFamily):
    """Ablation 2: a VAE left at its initialisation (eval mode), the discriminator trained on its latent means."""

    name = "vaal_frozen_vae"
    trains_vae = False


@register_method
class VAEWasserstein(VAALFamily):
    """Ablation 3: a VAE trained without the adversarial term; the candidates farthest (Eq. 5, 2-Wasserstein)
    from the Gaussian of the labeled set's latents are selected."""

    name = "vae_wasserstein"
    adversarial = False
    discriminates = None

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        labeled_mu, labeled_var = labeled_distribution(*self.latents(ctx, ctx.pool.labeled, "labeled"))
        self.save_reconstructions(ctx)
        return wasserstein_to_labeled(*self.latents(ctx, candidates, "unlabeled"), labeled_mu, labeled_var)

