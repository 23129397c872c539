"""AOFP's masked multi-path graph, and the exactness of physical pruning."""

import numpy as np
import pytest

from aofp.masked_builder import MaskedConvNetBuilder
from aofp.pipeline import evaluate_weights, prune_weights
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.network.builder import Node
from tf_benchmarks.models.registry import get_model
import tensorflow.compat.v1 as tf
from helpers import random_images, random_weights, search_metrics

DEPS = [6, 6, 8, 8, 8, 8, 8, 10, 10, 10, 10, 10, 10]
LAYERS = list(range(13))


def _random_masks(deps, seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for i, d in enumerate(deps):
        mask = (rng.uniform(size=d) > 0.5).astype(np.float32)
        mask[rng.integers(d)] = 1.0
        masks[i] = mask
    return masks


class LiteralScorePathBuilder(ConvNetBuilder):
    """The original's definition, literally: a score tensor a_i * score_mask_i carried through the
    pooling/flatten and a full shadow of the next layer (the reference for the fast graph)."""

    def __init__(self, images, layers, masks, scores):
        super().__init__(images, phase_train=True)
        self.masks, self.scores, self.metrics, self.pending = masks, scores, {}, None

    def _after_conv(self, index, node):
        if self.pending is not None:
            conv = self.trace.convs[index]
            shadow = tf.nn.conv2d(self.pending[1], self.variables[conv.kernel], [1, 1, 1, 1], 'SAME')
            shadow, _, _ = tf.nn.fused_batch_norm(shadow, self.variables[conv.bn + '/gamma'],
                                                  self.variables[conv.bn + '/beta'], epsilon=1e-3)
            self._metric(node.tensor, tf.nn.relu(shadow))
        self.pending = (index, node.tensor * self.scores[index])
        return Node(node.tensor * self.masks[index], node.spec)

    def _after_affine(self, index, node):
        if self.pending is not None:
            layer = self.trace.affines[index]
            shadow = tf.nn.xw_plus_b(self.pending[1], self.variables[layer.kernel],
                                     self.variables[layer.bias])
            self._metric(node.tensor, tf.nn.relu(shadow))
        return node

    def _metric(self, normal, shadow):
        self.metrics[self.pending[0]] = tf.reduce_mean(tf.square(normal - shadow)) / \
            tf.reduce_mean(tf.square(normal))
        self.pending = None

    def _emit_pool(self, kind, x, ksize, strides, mode):
        if self.pending is not None:
            self.pending = (self.pending[0], super()._emit_pool(kind, self.pending[1], ksize,
                                                                strides, mode))
        return super()._emit_pool(kind, x, ksize, strides, mode)

    def _emit_flatten(self, x, size):
        if self.pending is not None:
            self.pending = (self.pending[0], super()._emit_flatten(self.pending[1], size))
        return super()._emit_flatten(x, size)


def _metrics(builder_fn, weights, feed_fn):
    vc = get_model('vc')
    with tf.Graph().as_default():
        builder = builder_fn(tf.constant(random_images(8)))
        vc.build(builder, DEPS)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for name, var in builder.variables.items():
                var.load(weights[name], sess)
            return sess.run([builder.metrics[i] for i in LAYERS], feed_fn(builder))


def test_metrics_equal_the_literal_definition_and_vanish_without_drops():
    weights = random_weights(get_model('vc').trace(DEPS), 0)
    masks = _random_masks(DEPS, 1)
    rng = np.random.default_rng(2)
    dropped, scores = {}, {}
    for i in LAYERS:
        alive = np.flatnonzero(masks[i])
        dropped[i] = np.sort(rng.choice(alive, max(1, len(alive) // 2), replace=False))
        scores[i] = masks[i].copy()
        scores[i][dropped[i]] = 0.0

    def feed(builder, drops):
        values = {builder.base_masks[i]: masks[i] for i in LAYERS}
        values.update({builder.dropped_filters[i]: drops[i].astype(np.int32) for i in LAYERS})
        return values

    fast = _metrics(lambda x: MaskedConvNetBuilder(x, True, LAYERS, search=True), weights,
                    lambda b: feed(b, dropped))
    literal = _metrics(lambda x: LiteralScorePathBuilder(x, LAYERS, masks, scores), weights,
                       lambda b: {})
    assert all(v > 1e-4 for v in literal)
    np.testing.assert_allclose(fast, literal, rtol=1e-5, atol=1e-9)
    none = _metrics(lambda x: MaskedConvNetBuilder(x, True, LAYERS, search=True), weights,
                    lambda b: feed(b, {i: np.zeros(0, np.int32) for i in LAYERS}))
    assert none == [0.0] * 13


def test_pruned_model_equals_the_masked_model():
    vc = get_model('vc')
    trace = vc.trace(DEPS)
    weights = random_weights(trace, 5)
    masks = _random_masks(DEPS, 6)
    tuned = hdf5_io.WeightFile(weights, tuple(DEPS), masks)
    pruned_weights, pruned_deps = prune_weights(vc, tuned)
    assert pruned_deps == [int(m.sum()) for m in masks.values()]
    images = random_images(16)
    masked = _masked_logits(vc, weights, masks, images)
    pruned = predict_logits(vc, pruned_deps, pruned_weights, images)
    assert np.abs(masked).max() > 1e-2
    np.testing.assert_allclose(pruned, masked, atol=1e-4, rtol=0)


def _masked_logits(model, weights, masks, images):
    from tf_benchmarks.engine.weights import key_variables, load_weights
    with tf.Graph().as_default() as graph:
        inputs = tf.placeholder(tf.float32, [None, 32, 32, 3])
        builder = MaskedConvNetBuilder(inputs, False, LAYERS)
        logits = model.build(builder, DEPS).tensor
        with tf.Session(graph=graph) as sess:
            load_weights(sess, key_variables(builder.trace), weights, 'w')
            feed = {builder.base_masks[i]: masks[i] for i in LAYERS}
            feed[inputs] = images
            return sess.run(logits, feed)


def test_pruned_and_masked_evaluations_give_the_same_top1(synthetic_dir):
    vc = get_model('vc')
    weights = random_weights(vc.trace(DEPS), 7)
    masks = _random_masks(DEPS, 8)
    tuned = hdf5_io.WeightFile(weights, tuple(DEPS), masks)
    pruned_weights, pruned_deps = prune_weights(vc, tuned)
    masked = evaluate_weights(vc, tuned, synthetic_dir, 64, 'tuned')
    pruned = evaluate_weights(vc, hdf5_io.WeightFile(pruned_weights, tuple(pruned_deps)),
                              synthetic_dir, 64, 'pruned')
    assert masked.num_examples == pruned.num_examples == 200
    assert masked.top1 == pruned.top1 and masked.top5 == pruned.top5
    assert abs(masked.loss - pruned.loss) < 1e-4


@pytest.mark.parametrize('name,deps', [
    ('dc40', [6] + [4] * 12 + [20] + [4] * 12 + [24] + [4] * 12),
    ('src56', [d // 4 for d in get_model('src56').default_deps]),
    ('src110', [d // 4 for d in get_model('src110').default_deps])])
def test_masked_equals_pruned_on_every_model(name, deps):
    """Random masks on every channel group (concatenations, BN-ReLU before the consumers, residual
    groups): the masked model computes exactly what the physically pruned one does."""
    model = get_model(name)
    trace = model.trace(deps)
    weights = random_weights(trace, 11)
    rng = np.random.default_rng(12)
    masks = {}
    for group in trace.groups:
        mask = (rng.uniform(size=deps[group.root]) > 0.5).astype(np.float32)
        mask[rng.integers(deps[group.root])] = 1.0
        masks[group.root] = mask
    tuned = hdf5_io.WeightFile(weights, tuple(deps), masks)
    pruned_weights, pruned_deps = prune_weights(model, tuned)
    assert pruned_deps == list(model.check_deps(pruned_deps))
    images = random_images(8)
    layers = sorted(masks)
    masked = predict_logits(model, deps, weights, images,
                            builder_factory=lambda x, phase_train: MaskedConvNetBuilder(
                                x, phase_train, layers),
                            feed_fn=lambda b: {b.base_masks[i]: masks[i] for i in layers})
    pruned = predict_logits(model, pruned_deps, pruned_weights, images)
    assert np.abs(masked).max() > 1e-2
    np.testing.assert_allclose(pruned, masked, atol=1e-4 * max(1.0, np.abs(masked).max()), rtol=0)


def test_search_graph_on_concatenations_and_residual_groups():
    """dc40 (each target read by several later layers) and src56 (internal layers and, as
    targets, whole residual groups): one metric per target, positive with drops, 0 without."""
    for name, deps, layers in (
            ('dc40', [6] + [4] * 12 + [20] + [4] * 12 + [24] + [4] * 12, [1, 2, 12, 14, 27]),
            ('src56', [d // 4 for d in get_model('src56').default_deps], [0, 1, 19, 39])):
        model = get_model(name)
        weights = random_weights(model.trace(deps), 3)
        with_drops, without = search_metrics(model, deps, layers, weights, random_images(8))
        assert all(v > 1e-6 for v in with_drops), (name, with_drops)
        assert without == [0.0] * len(layers)
