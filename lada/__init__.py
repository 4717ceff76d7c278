"""LADA: Look-Ahead Data Acquisition via Augmentation (Kim, Song, Jang, Moon; NeurIPS 2021). Experiments and methods arrive with this folder's issue."""
