"""CReST / CReST+ for imbalanced semi-supervised learning."""
