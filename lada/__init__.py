"""LADA: Look-Ahead Data Acquisition via Augmentation for Active Learning (Kim, Song, Jang, Moon; NeurIPS 2021)."""
from lada import experiments, method  # noqa: F401  (registration)
