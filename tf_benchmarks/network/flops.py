"""FLOPs (multiply-accumulates of conv and FC layers) and parameter counts from a model's widths.

Convention (the originals'): conv MACs are k_h*k_w*C_in*C_out*H_out*W_out, FC MACs are in*out; BN,
ReLU, pooling and biases are not counted, and the classifier is counted with the model's
`flops_num_classes` outputs (10 for `vc`, whose 11th logit is the unused background class), so the
full `vc` counts 313,463,808. Parameters are the trainable entries (kernels, biases, BN gamma/beta).

Counts of the same network, named by `--flops_convention`:
- `torchvision` (the default): the network as built; for `sres50` the stride of a stage's first
  block on its 3x3 (torchvision's "v1.5"), 4,089,184,256 at 224x224, as the authors' 2021 READMEs;
  for `src56` the 1x1 stride-2 projections as 1x1 convs, 125,747,840 (as Distiller).
- `resnet_paper`: the ResNet paper's Table 1 ("v1"): that stride on the block's first 1x1, whose
  output is then a quarter of the size (3,857,973,248 for the full `sres50`), as the CVPR/ICML
  tables count. It differs only for models with `v1_strided_layers`.
- `projection_2x2`: the authors' FLOPs script for their stagewise CIFAR ResNets, which counts each
  1x1 stride-2 projection as a 2x2 conv (4x its MACs): 126,534,272 for the full `src56`. It
  differs only for models with `projection_layers`.
A model has at most one count besides the default (`alternative`), which logs, `summary` and
results.json show next to the primary one.
"""

CONVENTIONS = ('torchvision', 'resnet_paper', 'projection_2x2')
DEFAULT_CONVENTION = 'torchvision'


def alternative(model):
    """The model's other convention ('resnet_paper' for sres50, 'projection_2x2' for src56 and
    src110), or None where every convention counts the same."""
    if model.v1_strided_layers:
        return 'resnet_paper'
    if model.projection_layers:
        return 'projection_2x2'
    return None


def other_of(model, convention=DEFAULT_CONVENTION):
    """The convention to show beside `convention`: the model's alternative, or the default when
    `convention` is that alternative; None for models counted one way."""
    alt = alternative(model)
    if alt is None:
        return None
    return DEFAULT_CONVENTION if convention == alt else alt


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
    elif convention == 'projection_2x2':
        for index in model.projection_layers:
            macs += 3 * trace.convs[index].macs  # a 2x2 kernel at the same output size: 4x
    return macs


def other_convention(model, deps, image_size=None, base_deps=None,
                     convention=DEFAULT_CONVENTION):
    """For models counted two ways (sres50, src56, src110), the text `; resnet_paper: N (x%
    removed)` (or `; projection_2x2: ...`) to follow a FLOPs figure of `convention` in logs; ''
    for the others."""
    other = other_of(model, convention)
    if other is None:
        return ''
    n = count_flops(model, deps, other, image_size)
    removed = flops_pruned_ratio(model, deps, base_deps, other, image_size)
    return '; %s: %d (%.1f%% removed)' % (other, n, 100 * removed)


def other_removed(model, deps, base_deps=None, convention=DEFAULT_CONVENTION, image_size=None):
    """` (projection_2x2: 41.2%)`: the share removed under the model's other convention, to follow
    a share of `convention` in logs; '' for models counted one way."""
    other = other_of(model, convention)
    if other is None:
        return ''
    return ' (%s: %.1f%%)' % (other, 100 * flops_pruned_ratio(model, deps, base_deps, other,
                                                              image_size))


def count_params(model, deps):
    return model.trace(deps).num_params


def flops_pruned_ratio(model, deps, base_deps=None, convention=DEFAULT_CONVENTION,
                       image_size=None):
    """Fraction of FLOPs removed relative to `base_deps` (default: the model's original widths)."""
    base = count_flops(model, model.default_deps if base_deps is None else base_deps, convention,
                       image_size)
    return 1.0 - count_flops(model, deps, convention, image_size) / float(base)
