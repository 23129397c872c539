"""Batch norm folded for inference, in NumPy: a BN that directly follows a convolution becomes part
of its kernel and a bias; any other BN (DenseNet's pre-activation ones) becomes a per-channel scale
and shift."""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np


@dataclasses.dataclass
class FoldedWeights:
    """Inference weights of a traced network: per conv index (kernel, bias or None), per BN scope
    left standing (scale, shift), per affine index (kernel, bias), and the scopes of the folded
    BNs (which compute nothing at inference)."""
    convs: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]]
    bns: Dict[str, Tuple[np.ndarray, np.ndarray]]
    affines: Dict[int, Tuple[np.ndarray, np.ndarray]]
    folded_bns: frozenset
    depthwise: Dict[int, Tuple[np.ndarray, Optional[np.ndarray]]] = dataclasses.field(
        default_factory=dict)  # per depthwise index (kernel, bias or None), as they are


def bn_scale_shift(gamma, beta, mean, variance, epsilon):
    """y = gamma (x - mean) / sqrt(variance + epsilon) + beta  ==  x * scale + shift."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return scale, shift


def fold_conv_bn(kernel, gamma, beta, mean, variance, epsilon, bias=None):
    """An HWIO conv kernel (and its bias) followed by inference-mode BN -> (kernel, bias) of one
    conv + bias."""
    scale, shift = bn_scale_shift(gamma, beta, mean, variance, epsilon)
    folded = np.asarray(kernel, np.float64) * scale  # scales the output-channel axis (last)
    if bias is not None:
        shift = shift + np.asarray(bias, np.float64) * scale
    return folded.astype(np.float32), shift.astype(np.float32)


def fold_batch_norms(trace, weights):
    """FoldedWeights of `weights` (name -> array, the widths of `trace`)."""
    bns = {bn.scope: bn for bn in trace.bns}

    def bn_vectors(scope):
        return [weights['%s/%s' % (scope, role)]
                for role in ('gamma', 'beta', 'moving_mean', 'moving_variance')]

    convs, folded = {}, set()
    for conv in trace.convs:
        kernel = weights[conv.kernel]
        bias = None if conv.bias is None else np.asarray(weights[conv.bias], np.float32)
        if conv.bn is not None:
            convs[conv.index] = fold_conv_bn(kernel, *bn_vectors(conv.bn), bns[conv.bn].epsilon,
                                             bias=bias)
            folded.add(conv.bn)
        else:
            convs[conv.index] = (np.asarray(kernel, np.float32), bias)
    standing = {}
    for scope, bn in bns.items():
        if scope not in folded:
            scale, shift = bn_scale_shift(*bn_vectors(scope), bn.epsilon)
            standing[scope] = (scale.astype(np.float32), shift.astype(np.float32))
    affines = {a.index: (np.asarray(weights[a.kernel], np.float32),
                         np.asarray(weights[a.bias], np.float32)) for a in trace.affines}
    depthwise = {d.index: (np.asarray(weights[d.kernel], np.float32),
                           None if d.bias is None else np.asarray(weights[d.bias], np.float32))
                 for d in trace.depthwise}
    return FoldedWeights(convs, standing, affines, frozenset(folded), depthwise)
