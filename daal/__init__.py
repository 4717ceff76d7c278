"""DAAL: Dual Adversarial Network for Deep Active Learning (Wang et al.; ECCV 2020). Experiments and methods arrive with this folder's issue."""
