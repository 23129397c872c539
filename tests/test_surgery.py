"""The shared pruning surgery: slot semantics on hand-checked arrays, and exactness on real graphs
(vc chain with flatten/FC, dc40 concatenations feeding every later layer, transitions and the FC)."""

import numpy as np
import pytest

from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.builder import NetworkBuilder
from tf_benchmarks.network.trace import SELECT
from tf_benchmarks.pruning.surgery import apply_surgery, clusters_from_mask
from helpers import random_images, random_weights


def _tiny_trace():
    """4x4x1 image -> conv 3 filters + BN -> 2x2 max-pool -> flatten (2x2x3 = 12) -> FC 2."""
    cnn = NetworkBuilder(image_shape=(4, 4, 1))
    cnn.conv(3, 3, 3)
    cnn.mpool(2, 2)
    cnn.flatten()
    cnn.affine(2, activation='linear')
    return cnn.trace


def test_select_and_sum_slots_by_hand():
    trace = _tiny_trace()
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(size=v.shape) for n, v in trace.variables.items()}
    new, deps = apply_surgery(trace, weights, {0: [[2, 0]]})   # 1 removed, 2 summed into 0
    assert deps == [1]
    kernel = weights['conv0/conv2d/kernel']
    np.testing.assert_array_equal(new['conv0/conv2d/kernel'], kernel[..., [0]])
    for role in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
        np.testing.assert_array_equal(new['conv0/batchnorm0/' + role],
                                      weights['conv0/batchnorm0/' + role][[0]])
    fc = weights['affine0/dense/kernel']           # rows p*3 + c for spatial position p
    expected = np.stack([fc[3 * p] + fc[3 * p + 2] for p in range(4)])
    np.testing.assert_allclose(new['affine0/dense/kernel'], expected)
    np.testing.assert_array_equal(new['affine0/dense/bias'], weights['affine0/dense/bias'])


def test_bad_plans_are_rejected():
    trace = _tiny_trace()
    weights = {n: np.zeros(v.shape) for n, v in trace.variables.items()}
    for plan, message in (({0: []}, 'at least one'), ({0: [[0], [0, 1]]}, 'two clusters'),
                          ({0: [[3]]}, 'out of range'), ({0: [[]]}, 'empty')):
        with pytest.raises(ValueError, match=message):
            apply_surgery(trace, weights, plan)


def test_removed_channels_that_output_zero_give_identical_logits():
    """vc: channels whose BN gamma and beta are 0 output exactly 0; removing them changes nothing."""
    vc = get_model('vc')
    deps = [6, 6, 8, 8, 8, 8, 8, 10, 10, 10, 10, 10, 10]
    trace = vc.trace(deps)
    weights = random_weights(trace, 0)
    rng = np.random.default_rng(2)
    masks = {}
    for layer, conv in enumerate(trace.convs):
        mask = (rng.uniform(size=conv.out_channels) > 0.4).astype(np.float32)
        mask[rng.integers(conv.out_channels)] = 1
        masks[layer] = mask
        for role in ('gamma', 'beta'):
            weights['%s/%s' % (conv.bn, role)] *= mask
    plans = {layer: clusters_from_mask(mask) for layer, mask in masks.items()}
    pruned, new_deps = apply_surgery(trace, weights, plans)
    assert new_deps == [int(m.sum()) for m in masks.values()]
    images = random_images()
    full = predict_logits(vc, deps, weights, images)
    small = predict_logits(vc, new_deps, pruned, images)
    np.testing.assert_allclose(small, full, atol=1e-4, rtol=0)


def make_clusters_identical(trace, weights, plans):
    """Copy each cluster survivor's output filter and every SELECT entry onto the other members."""
    weights = {n: v.copy() for n, v in weights.items()}
    for layer, clusters in plans.items():
        for slot in trace.slots[layer]:
            if slot.kind != SELECT:
                continue
            array = np.moveaxis(weights[slot.var], slot.axis, 0)
            for cluster in clusters:
                survivor = min(cluster)
                for member in cluster:
                    for rep, pos in enumerate(slot.positions(member)):
                        array[pos] = array[slot.positions(survivor)[rep]]
    return weights


def test_trimming_identical_dc40_clusters_changes_no_output():
    dc40 = get_model('dc40')
    deps = [6] + [4] * 12 + [20] + [4] * 12 + [24] + [4] * 12
    trace = dc40.trace(deps)
    rng = np.random.default_rng(3)
    plans = {}
    for layer, width in enumerate(deps):
        labels = rng.integers(0, 2, width)
        labels[:2] = [0, 1]
        plans[layer] = [list(np.flatnonzero(labels == k)) for k in (0, 1)]
    weights = make_clusters_identical(trace, random_weights(trace, 4), plans)
    trimmed, new_deps = apply_surgery(trace, weights, plans)
    assert new_deps == [2] * 39
    assert trimmed['fc10/kernel'].shape == (2 + 12 * 2, 10)
    assert trimmed['stage2/block3/conv1/kernel'].shape == (3, 3, 2 + 3 * 2, 2)
    assert_same_logits(dc40, deps, weights, new_deps, trimmed)


def assert_same_logits(model, deps, weights, new_deps, new_weights):
    images = random_images()
    full = predict_logits(model, deps, weights, images)
    small = predict_logits(model, new_deps, new_weights, images)
    assert np.abs(full).max() > 1e-2
    np.testing.assert_allclose(small, full, atol=1e-4 * max(1.0, np.abs(full).max()), rtol=0)


def test_trimming_identical_clusters_of_tied_resnet_groups_changes_no_output():
    """src56 with random collapsed clusters on every layer: one plan per channel group (given for
    the pacesetter) reaches every follower, the projections, the internal convs and the FC."""
    src56 = get_model('src56')
    deps = [d // 4 for d in src56.default_deps]   # 4 / 8 / 16
    trace = src56.trace(deps)
    rng = np.random.default_rng(5)
    plans = {}
    for group in trace.groups:
        width = deps[group.root]
        labels = rng.integers(0, width // 2, width)
        labels[:width // 2] = np.arange(width // 2)
        plans[group.root] = [list(np.flatnonzero(labels == k)) for k in range(width // 2)]
    expanded = trace.expand_to_groups(plans)
    assert sorted(expanded) == list(range(57))
    weights = make_clusters_identical(trace, random_weights(trace, 6), expanded)
    trimmed, new_deps = apply_surgery(trace, weights, plans)
    assert new_deps == [d // 2 for d in deps]
    assert trimmed['v0/cg/conv21/conv2d/kernel'].shape == (3, 3, 4, 4)
    assert trimmed['v0/cg/affine0/dense/kernel'].shape == (8, 10)
    assert_same_logits(src56, deps, weights, new_deps, trimmed)


def test_tied_layers_cannot_get_different_plans():
    trace = get_model('src56').trace()
    with pytest.raises(ValueError, match='layers 0 and 2 are one channel group'):
        apply_surgery(trace, random_weights(trace, 0), {0: [[i] for i in range(8)],
                                                        2: [[i] for i in range(9)]})
