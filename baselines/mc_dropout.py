"""MC-Dropout (Gal et al. 2017): T stochastic passes with BatchNorm in eval mode and dropout on (VAAL Sec. 4.1
uses T = 10). Acquisition: entropy of the mean prediction (default), BALD, or variation ratios.

Only the head after the deterministic trunk is re-run T times: with BatchNorm frozen the trunk's output is the
same in every pass, so this gives the same distribution as T full passes at a fraction of the cost. For
segmentation the acquisition is computed per pixel and averaged over the image."""
import numpy as np
import torch
import torch.nn as nn

from baselines.uncertainty import entropy
from core.lib import (CycleContext, CycleSizes, CycleWork, ScoringStrategy, UserError, autocast, class_last,
                      image_scores, inference, map_batches, register_method)


def mean_entropy(samples: torch.Tensor) -> torch.Tensor:
    """samples: (T, N, ..., C) softmax outputs -> entropy of the mean, (N, ...)."""
    return entropy(samples.mean(dim=0))


def bald(samples: torch.Tensor) -> torch.Tensor:
    """Mutual information between prediction and weights: H(mean) - mean H (Houlsby et al. 2011)."""
    return entropy(samples.mean(dim=0)) - entropy(samples).mean(dim=0)


def variation_ratio(samples: torch.Tensor) -> torch.Tensor:
    """1 - f_mode / T, with f_mode the vote count of the most voted class (Freeman 1965; Beluch et al. 2018)."""
    votes = samples.argmax(dim=-1)                                     # (T, N)
    counts = torch.nn.functional.one_hot(votes, samples.shape[-1]).sum(dim=0)
    return 1 - counts.max(dim=-1).values.float() / samples.shape[0]


ACQUISITIONS = {"entropy": mean_entropy, "bald": bald, "variation_ratio": variation_ratio}


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) for m in model.modules())


@torch.no_grad()
def mc_dropout_samples(model, source, indices: np.ndarray, batch_size: int, passes: int, reduce,
                       amp: bool = False, progress: str | None = None) -> torch.Tensor:
    """Scores of `indices` by `reduce` over T stochastic softmax samples, on the device."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train()
    trunk_of = inference(model.forward_trunk, batch_size)      # deterministic: compiled under runtime.compile

    def compute(images):
        with autocast(source.device, amp):
            trunk = trunk_of(images)
            samples = torch.stack([torch.softmax(model.forward_head(trunk)[0].float(), dim=1) for _ in range(passes)])
        return image_scores(reduce(class_last(samples, class_dim=2)))

    scores = map_batches(source, indices, batch_size, compute, progress)
    model.eval()
    return scores


@register_method
class MCDropout(ScoringStrategy):
    name = "mc_dropout"
    default_options = {"passes": 10, "acquisition": "entropy", "dropout": 0.5}

    def __init__(self, options=None):
        super().__init__(options)
        if self.options["acquisition"] not in ACQUISITIONS:
            raise UserError(f"mc_dropout acquisition '{self.options['acquisition']}' is not one of "
                            f"{', '.join(ACQUISITIONS)}; set method_options.mc_dropout.acquisition")

    def prepare_model(self, model, ctx: CycleContext):
        """Networks without dropout (ResNet, WRN) get Dropout(p) before the classifier for this method only."""
        if not has_dropout(model):
            model.classifier = nn.Sequential(nn.Dropout(self.options["dropout"]), model.classifier)
            self.diagnostics = {"dropout_added_before_classifier": self.options["dropout"]}
        return model

    def score(self, model, ctx: CycleContext, candidates: np.ndarray) -> torch.Tensor:
        return mc_dropout_samples(model, ctx.source, candidates, ctx.eval_batch_size, self.options["passes"],
                                  ACQUISITIONS[self.options["acquisition"]], ctx.config.train.amp,
                                  "score mc_dropout" if ctx.progress else None)

    def cycle_work(self, config, num_classes: int, cycle: CycleSizes) -> CycleWork:
        """One pass through the trunk and T through the head, per candidate. Held while a batch is scored: the
        T softmax outputs and their stack (2T), with a head's logits and the mean or the entropies (2 more);
        variation ratios' one-hot votes are int64, twice the stack (4T in all)."""
        passes = self.options["passes"]
        held = 4 * passes if self.options["acquisition"] == "variation_ratio" else 2 * passes + 2
        return CycleWork(scored=cycle.candidates, task_inferred=cycle.candidates,
                         task_head_inferred=passes * cycle.candidates, held_outputs=held)
