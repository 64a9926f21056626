"""Datasets for imbalanced semi-supervised learning (see `data.registry`)."""
