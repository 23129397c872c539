"""AOFP's masked multi-path graph, and the exactness of physical pruning."""

import numpy as np

from aofp.masked_builder import MaskedConvNetBuilder
from aofp.pipeline import AofpPruning, evaluate_weights
from aofp.presets import PRESETS
from tf_benchmarks import hdf5_io
from tf_benchmarks.evaluation import predict_logits
from tf_benchmarks.models import get_model
from tf_benchmarks.session import tf
from helpers import random_images, random_weights

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


def test_metrics_are_zero_when_nothing_is_dropped_and_positive_otherwise():
    vc = get_model('vc')
    weights = random_weights(vc.trace(DEPS), 0)
    with tf.Graph().as_default():
        images = tf.constant(random_images(8))
        builder = MaskedConvNetBuilder(images, True, LAYERS, search=True)
        vc.build(builder, DEPS)
        assert sorted(builder.metrics) == LAYERS
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for name, var in builder.variables.items():
                var.load(weights[name], sess)
            metrics = [builder.metrics[i] for i in LAYERS]
            masks = _random_masks(DEPS, 1)
            feed = {builder.base_masks[i]: masks[i] for i in LAYERS}
            feed.update({builder.score_masks[i]: masks[i] for i in LAYERS})
            assert sess.run(metrics, feed) == [0.0] * 13
            for i in LAYERS:
                score = masks[i].copy()
                score[np.flatnonzero(score)[0]] = 0.0
                feed[builder.score_masks[i]] = score
            values = sess.run(metrics, feed)
    assert all(v > 0 for v in values) and all(np.isfinite(values))


def test_pruned_model_equals_the_masked_model():
    vc = get_model('vc')
    trace = vc.trace(DEPS)
    weights = random_weights(trace, 5)
    masks = _random_masks(DEPS, 6)
    tuned = hdf5_io.WeightFile(weights, tuple(DEPS), masks)
    pruning = AofpPruning(vc, PRESETS['smoke'], data_dir=None)
    pruned_weights, pruned_deps = pruning.prune(tuned)
    assert pruned_deps == [int(m.sum()) for m in masks.values()]
    images = random_images(16)
    masked = _masked_logits(vc, weights, masks, images)
    pruned = predict_logits(vc, pruned_deps, pruned_weights, images)
    assert np.abs(masked).max() > 1e-2
    np.testing.assert_allclose(pruned, masked, atol=1e-4, rtol=0)


def _masked_logits(model, weights, masks, images):
    from tf_benchmarks.trainer import key_variables, load_weights
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
    pruned_weights, pruned_deps = AofpPruning(vc, PRESETS['smoke'], None).prune(tuned)
    masked = evaluate_weights(vc, tuned, synthetic_dir, 64, 'tuned')
    pruned = evaluate_weights(vc, hdf5_io.WeightFile(pruned_weights, tuple(pruned_deps)),
                              synthetic_dir, 64, 'pruned')
    assert masked.num_examples == pruned.num_examples == 200
    assert masked.top1 == pruned.top1 and masked.top5 == pruned.top5
    assert abs(masked.loss - pruned.loss) < 1e-4
