"""Image augmentation: short-key specs (`augment.registry`) over batched ops."""
