"""Comparison methods shared by every paper's experiments; importing the package registers them."""
from baselines import (committee, coreset, experiments, full_data, learning_loss, mc_dropout,  # noqa: F401
                       uncertainty)
