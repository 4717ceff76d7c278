"""LADA: Look-Ahead Data Acquisition via Augmentation for Active Learning (Kim, Song, Jang, Moon; NeurIPS 2021)."""
from lada import ada_mixup, experiments, method, stn  # noqa: F401  (registration)
