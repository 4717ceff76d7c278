"""DAAL: Dual Adversarial Network for Deep Active Learning (Wang, Li, Ma, Ma, Guan, Zheng; ECCV 2020)."""
from daal import ablations, experiments, method  # noqa: F401  (registration)
