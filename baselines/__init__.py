"""Comparison methods shared by every paper's experiments; importing the package registers them."""
from baselines import committee, coreset, experiments, learning_loss, mc_dropout, uncertainty  # noqa: F401
