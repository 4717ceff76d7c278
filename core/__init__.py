"""Shared machinery for the active-learning reproductions: data, pools, training, the AL loop, results."""
