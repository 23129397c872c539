"""Filter scores both methods and the oracle use, from weights alone (NumPy): the kernel L1 norm per
output filter, summed over a channel group's members, and |BN gamma| per channel."""

import numpy as np


def filters_as_points(kernel):
    """HWIO kernel -> [C_out, k_h*k_w*C_in]: one point per output filter."""
    kernel = np.asarray(kernel)
    return kernel.reshape(-1, kernel.shape[-1]).T


def filter_l1(kernel):
    """L1 norm of each output filter: sum of |K| over k_h, k_w, C_in."""
    return np.abs(filters_as_points(kernel)).sum(axis=1)


def group_l1(trace, weights, layer):
    """Kernel L1 norm per filter; for a channel group, summed over its members' kernels (as the
    magnitude baseline ranks a group)."""
    return sum(filter_l1(weights[trace.convs[m].kernel]) for m in trace.group_of(layer).members)


def group_gamma(trace, weights, layer):
    """|BN gamma| per channel, the mean over every BN that normalizes the layer's (group's) channels
    (vc and the ResNets: the BN after the conv; DenseNet: the later layers' BNs); None without BN."""
    columns = []
    width = trace.convs[layer].out_channels
    for member in trace.group_of(layer).members:
        for slot in trace.slots[member]:
            if slot.var.endswith('/gamma'):
                gamma = np.abs(np.asarray(weights[slot.var], dtype=np.float64))
                columns.append([gamma[slot.positions(c)[0]] for c in range(width)])
    return np.mean(columns, axis=0) if columns else None
