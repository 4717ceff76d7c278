"""TA-VAAL: Task-Aware Variational Adversarial Active Learning (Kim, Park, Kim, Chun; CVPR 2021). Experiments and methods arrive with this folder's issue."""
