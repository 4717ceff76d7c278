"""Comparison methods shared by every paper's experiments; importing the package registers them."""
from baselines import (badge, bench, committee, coreset, experiments, full_data, learning_loss,  # noqa: F401
                       mc_dropout, uncertainty)
