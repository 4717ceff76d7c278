"""TA-VAAL: Task-Aware Variational Adversarial Active Learning (Kim, Park, Kim, Chun; CVPR 2021)."""
from ta_vaal import experiments, method, networks  # noqa: F401  (registration)
