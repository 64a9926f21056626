"""Networks: WideResNet-28-k and a small CPU CNN.

Use `networks.registry.build(arch, num_classes=..., input_shape=...)`,
`networks.registry.names()` and `networks.registry.decay_variables(model)`.
"""
