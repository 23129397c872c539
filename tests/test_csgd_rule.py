"""C-SGD's clustering and centripetal rule, in plain NumPy (and the graph handler against it)."""

import dataclasses

import numpy as np
import pytest

from csgd import clustering
from tf_benchmarks.pruning import criteria
from csgd.centripetal import (CentripetalHandler, centripetal_gradient, decay_matrix,
                              merge_matrix)
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.models.densenet_model import customized_dc40_deps
import tensorflow.compat.v1 as tf

CLUSTERS = [[0, 3, 4], [1], [2, 5]]


def test_merge_and_decay_matrices():
    gamma = merge_matrix(CLUSTERS, 6)
    np.testing.assert_allclose(gamma[0], [1 / 3, 0, 0, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(gamma[1], [0, 1, 0, 0, 0, 0])
    decay = decay_matrix(CLUSTERS, 6, weight_decay=1e-4, strength=3e-3)
    assert decay[1, 1] == pytest.approx(1e-4)                       # singleton: eta only
    assert decay[0, 0] == pytest.approx(1e-4 + 3e-3 - 1e-3)          # eta + eps - eps/|H|
    assert decay[0, 3] == pytest.approx(-1e-3)
    with pytest.raises(ValueError):
        merge_matrix([[0, 1]], 3)


def test_data_gradient_is_shared_within_a_cluster():
    rng = np.random.default_rng(0)
    grad, weights = rng.normal(size=(6, 27)), rng.normal(size=(6, 27))
    eta, eps = 1e-4, 3e-3
    new = centripetal_gradient(grad, weights, CLUSTERS, eta, eps)
    for cluster in CLUSTERS:
        for j in cluster:
            for k in cluster:
                np.testing.assert_allclose(new[j] - new[k], (eta + eps) * (weights[j] - weights[k]),
                                           atol=1e-12)
    np.testing.assert_allclose(new[1], grad[1] + eta * weights[1])


def test_differences_shrink_geometrically():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(6, 10))
    eta, eps, lr = 1e-4, 0.05, 0.1
    start = weights[0] - weights[3]
    for _ in range(200):
        weights = weights - lr * centripetal_gradient(rng.normal(size=(6, 10)), weights,
                                                      CLUSTERS, eta, eps)
    np.testing.assert_allclose(weights[0] - weights[3], start * (1 - lr * (eta + eps)) ** 200,
                               rtol=1e-6, atol=1e-12)


def test_graph_handler_equals_the_numpy_rule():
    dc40 = get_model('dc40')
    deps = customized_dc40_deps('4-4-4')
    trace = dc40.trace(deps)
    rng = np.random.default_rng(2)
    plans = {l: clustering.even_clusters(c.out_channels, max(1, c.out_channels // 2))
             for l, c in enumerate(trace.convs)}
    bn_plans = clustering.bn_channel_clusters(trace, plans)
    handler = CentripetalHandler(trace, plans, bn_plans, 1e-4, 3e-3)
    kernel_name, bn_gamma = trace.convs[5].kernel, trace.bns[7].scope + '/gamma'
    with tf.Graph().as_default():
        variables = {name: tf.Variable(rng.normal(size=info.shape).astype(np.float32), name=name)
                     for name, info in trace.variables.items() if info.trainable}
        grads = {name: tf.constant(rng.normal(size=v.shape.as_list()).astype(np.float32))
                 for name, v in variables.items()}
        pairs = [(grads[n], variables[n]) for n in variables]
        with pytest.raises(ValueError, match='no gradient for 1 clustered variables'):
            handler([p for p in pairs if p[1] is not variables[kernel_name]])
        out = dict(zip(variables, (g for g, _ in handler(pairs))))
        kernel, gamma, other = (variables[n] for n in (kernel_name, bn_gamma, 'fc10/kernel'))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run([out[n] for n in (kernel_name, bn_gamma, 'fc10/kernel')] +
                              [grads[n] for n in (kernel_name, bn_gamma, 'fc10/kernel')] +
                              [kernel, gamma])
    new_k, new_g, new_o, gk, gg, go, k, g = values
    expected_k = centripetal_gradient(gk.reshape(-1, 4).T, k.reshape(-1, 4).T, plans[5], 1e-4,
                                      3e-3).T.reshape(k.shape)
    np.testing.assert_allclose(new_k, expected_k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_g, centripetal_gradient(gg[:, None], g[:, None], bn_plans[7],
                                                           0.0, 3e-3)[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_o, go)   # the FC kernel is left alone (no decay during C-SGD)


def test_kmeans_recovers_planted_clusters_deterministically():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(3, 3 * 3 * 5))
    labels = np.array([0, 1, 2, 0, 1, 2, 2, 0, 1, 1, 0, 2])
    points = centers[labels] + rng.normal(scale=1e-3, size=(12, 45))
    kernel = points.T.reshape(3, 3, 5, 12)
    clusters = clustering.kmeans_clusters(kernel, 3, seed=0)
    assert sorted(map(sorted, clusters)) == sorted(list(np.flatnonzero(labels == c))
                                                   for c in range(3))
    assert clustering.kmeans_clusters(kernel, 3, seed=0) == clusters
    same = np.zeros((3, 3, 2, 6))   # identical filters: fewer distinct points than clusters
    clusters = clustering.kmeans_clusters(same, 4)
    assert len(clusters) == 4 and all(clusters) and sorted(sum(clusters, [])) == list(range(6))


def test_even_and_biased_clusters():
    assert clustering.even_clusters(12, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert clustering.even_clusters(5, 2) == [[0, 1, 2], [3, 4]]
    assert clustering.biased_clusters(12, 3) == [list(range(10)), [10], [11]]


def test_magnitude_plans_original_quirk_and_clean():
    l1 = np.array([5.0, 0.1, 3.0, 0.2, 4.0, 0.3])
    assert np.allclose(criteria.filter_l1(np.ones((3, 3, 2, 6)) * l1), 18 * l1)
    # kept: 0, 2, 4 (largest L1); dropped 1, 3, 5 join the first kept filter's cluster
    assert clustering.magnitude_plan(l1, 3, 'original') == [[0, 1, 3, 5], [2], [4]]
    assert clustering.magnitude_plan(l1, 3, 'clean') == [[0], [2], [4]]
    # quirk 1: the first cluster is [1, 0, 2] and its smallest index, 0, a dropped filter, survives
    assert clustering.magnitude_plan(np.array([0.1, 5.0, 0.2, 4.0]), 2, 'original') == \
        [[1, 0, 2], [3]]


def _original_bn_eqcls_dc40(eqcls, deps):
    """calculate_bn_eqcls_dc40 as the original spells it out (spec csgd.md section 3.5)."""
    bn, width = {}, {}
    for start in (0, 13, 26):
        bn[start], width[start] = [list(c) for c in eqcls[start]], deps[start]
        for b in range(start + 1, start + 13):
            shifted = [[width[b - 1] + c for c in cluster] for cluster in eqcls[b]]
            bn[b], width[b] = bn[b - 1] + shifted, width[b - 1] + deps[b]
    return {b: [sorted(c) for c in bn[b]] for b in bn}


def test_bn_clusters_equal_the_originals_construction_on_dc40():
    dc40 = get_model('dc40')
    deps = customized_dc40_deps('5-4-6')
    trace = dc40.trace(deps)
    rng = np.random.default_rng(4)
    plans = {}
    for layer, width in enumerate(deps):
        labels = rng.integers(0, 3, width)
        plans[layer] = [list(np.flatnonzero(labels == k)) for k in range(3) if (labels == k).any()]
    ours = clustering.bn_channel_clusters(trace, plans)
    # the original's BN index b normalizes the input of kernel b + 1
    reference = _original_bn_eqcls_dc40(plans, deps)
    assert {b: sorted(ours[b]) for b in ours} == {b: sorted(reference[b]) for b in reference}


def test_csgd_training_applies_weight_decay_exactly_once(synthetic_dir, tmp_path):
    """The C-SGD trainer's final gradient of a kernel with singleton clusters is G + eta W (the
    decay matrix's eta, not also the trainer's L2), and the FC kernel's is G."""
    from csgd.pipeline import CentripetalSGD, Iteration
    from csgd.presets import PRESETS
    from helpers import random_weights
    from tf_benchmarks.files import hdf5_io
    dc40 = get_model('dc40')
    deps = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
    init = str(tmp_path / 'init.hdf5')
    hdf5_io.save_hdf5(init, random_weights(dc40.trace(deps), 3), deps)
    settings = dataclasses.replace(PRESETS['smoke']['dc40'], target_deps='1-1-1', batch_size=8,
                                   weight_decay=0.05)
    method = CentripetalSGD(dc40, settings, synthetic_dir, init, log=lambda m: None)
    iteration = Iteration(method, 0, init, method.origin_deps, method.targets[0],
                          method.files(0))
    plans = {l: clustering.even_clusters(d, t)
             for l, (d, t) in enumerate(zip(method.origin_deps, method.targets[0]))}
    trainer, handler = iteration.csgd_trainer(plans, clustering.bn_channel_clusters(
        method.trace, plans))
    names = ['conv0/kernel', 'fc10/kernel']
    with trainer.graph.as_default():
        variables = [trainer.key_variables[n] for n in names]
        data_grads = tf.gradients(trainer.cross_entropy, variables)
        with tf.Session() as sess:
            sess.run([trainer.init_op, tf.local_variables_initializer()])
            trainer.data.initialize(sess, 0)
            final, data, weights = sess.run(
                [[handler.gradients[n] for n in names], data_grads, variables])
    np.testing.assert_allclose(final[0], data[0] + 0.05 * weights[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(final[1], data[1], rtol=1e-6, atol=1e-8)
