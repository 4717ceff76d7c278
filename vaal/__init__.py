"""VAAL: Variational Adversarial Active Learning (Sinha, Ebrahimi, Darrell; ICCV 2019)."""
from vaal import experiments, method  # noqa: F401  (registration)
