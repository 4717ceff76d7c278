"""Comparison methods shared by every paper's experiments; importing the package registers them."""
from baselines import experiments, uncertainty  # noqa: F401  (registration)
