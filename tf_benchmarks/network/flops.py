"""FLOPs (multiply-accumulates of conv and FC layers) and parameter counts from a model's widths.

Convention (the originals'): conv MACs are k_h*k_w*C_in*C_out*H_out*W_out, FC MACs are in*out; BN,
ReLU, pooling and biases are not counted, and the classifier is counted with the model's
`flops_num_classes` outputs (10 for `vc`, whose 11th logit is the unused background class), so the
full `vc` counts 313,463,808. Parameters are the trainable entries (kernels, biases, BN gamma/beta).
"""


def count_flops(model, deps):
    return model.trace(deps, num_classes=model.flops_num_classes).macs


def count_params(model, deps):
    return model.trace(deps).num_params


def flops_pruned_ratio(model, deps, base_deps=None):
    """Fraction of FLOPs removed relative to `base_deps` (default: the model's original widths)."""
    base = count_flops(model, model.default_deps if base_deps is None else base_deps)
    return 1.0 - count_flops(model, deps) / float(base)
