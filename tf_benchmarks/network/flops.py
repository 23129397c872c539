"""FLOPs (multiply-accumulates of conv and FC layers) and parameter counts from a model's widths.

Convention (the originals'): conv MACs are k_h*k_w*C_in*C_out*H_out*W_out, FC MACs are in*out; BN,
ReLU, pooling and biases are not counted, and the classifier is counted with the model's
`flops_num_classes` outputs (10 for `vc`, whose 11th logit is the unused background class), so the
full `vc` counts 313,463,808. Parameters are the trainable entries (kernels, biases, BN gamma/beta).

Two counts of the same network, named by `--flops_convention`:
- `torchvision` (the default): the network as built; for `sres50` the stride of a stage's first
  block on its 3x3 (torchvision's "v1.5"), 4,089,184,256 at 224x224, as the authors' 2021 READMEs.
- `resnet_paper`: the ResNet paper's Table 1 ("v1"): that stride on the block's first 1x1, whose
  output is then a quarter of the size (3,857,973,248 for the full `sres50`), as the CVPR/ICML
  tables count. The two differ only for models with `v1_strided_layers`.
"""

CONVENTIONS = ('torchvision', 'resnet_paper')
DEFAULT_CONVENTION = 'torchvision'


def _half(n):
    return (n + 1) // 2


def count_flops(model, deps, convention=DEFAULT_CONVENTION, image_size=None):
    """MACs of `model` at `deps` on square images of `image_size` (default: the model's)."""
    if convention not in CONVENTIONS:
        raise ValueError('unknown FLOPs convention %r; known: %s'
                         % (convention, ', '.join(CONVENTIONS)))
    shape = (image_size, image_size, 3) if image_size else None
    trace = model.trace(deps, num_classes=model.flops_num_classes, image_shape=shape)
    macs = trace.macs
    if convention == 'resnet_paper':
        for index in model.v1_strided_layers:
            conv = trace.convs[index]
            (h, w), (k_h, k_w) = conv.out_hw, conv.kernel_size
            v1 = k_h * k_w * conv.in_channels * conv.out_channels * _half(h) * _half(w)
            macs += v1 - conv.macs
    return macs


def other_convention(model, deps, image_size=None, base_deps=None):
    """For models counted differently under the ResNet paper's convention (sres50), the text
    `; resnet_paper: N (x% removed)` to follow a FLOPs figure of the default convention in logs;
    '' for the others."""
    if not model.v1_strided_layers:
        return ''
    n = count_flops(model, deps, 'resnet_paper', image_size)
    removed = flops_pruned_ratio(model, deps, base_deps, 'resnet_paper', image_size)
    return '; resnet_paper: %d (%.1f%% removed)' % (n, 100 * removed)


def count_params(model, deps):
    return model.trace(deps).num_params


def flops_pruned_ratio(model, deps, base_deps=None, convention=DEFAULT_CONVENTION,
                       image_size=None):
    """Fraction of FLOPs removed relative to `base_deps` (default: the model's original widths)."""
    base = count_flops(model, model.default_deps if base_deps is None else base_deps, convention,
                       image_size)
    return 1.0 - count_flops(model, deps, convention, image_size) / float(base)
