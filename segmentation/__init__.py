"""Active learning for semantic segmentation: DRN, Cityscapes, BDD100K, CamVid. Experiments and methods arrive with this folder's issue."""
