"""VAAL: Variational Adversarial Active Learning (Sinha, Ebrahimi, Darrell; ICCV 2019)."""
from vaal import experiments  # noqa: F401  (registration)
