"""The aligned training-mode batch norm gives `tf.nn.fused_batch_norm`'s outputs and gradients, and
the float64 definition of batch normalization, for channel counts that are not multiples of 16."""

import numpy as np
import pytest

from tf_benchmarks.network import batch_norm
import tensorflow.compat.v1 as tf

EPS = 1e-3


def _reference(x, gamma, beta, upstream):
    """float64 BN forward and backward by definition; the loss is sum(y * upstream)."""
    x, gamma, beta, upstream = (a.astype(np.float64) for a in (x, gamma, beta, upstream))
    n = x.size // x.shape[-1]
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    inv = 1 / np.sqrt(var + EPS)
    xhat = (x - mean) * inv
    y = xhat * gamma + beta
    dy = upstream
    dgamma, dbeta = (dy * xhat).sum((0, 1, 2)), dy.sum((0, 1, 2))
    dx = gamma * inv * (dy - dbeta / n - xhat * dgamma / n)
    return dict(y=y, mean=mean, var=var * n / (n - 1), dx=dx, dgamma=dgamma, dbeta=dbeta)


def _run(shape, aligned, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    values = dict(x=rng.normal(0.7, 2.0, shape), gamma=rng.uniform(0.5, 1.5, c),
                  beta=rng.uniform(-0.5, 0.5, c), upstream=rng.normal(size=shape))
    values = {k: v.astype(np.float32) for k, v in values.items()}
    with tf.Graph().as_default():
        x = tf.constant(values['x'])
        gamma, beta = tf.constant(values['gamma']), tf.constant(values['beta'])
        y, mean, var = batch_norm.batch_norm_training(x, gamma, beta, EPS, aligned=aligned)
        loss = tf.reduce_sum(y * values['upstream'])
        dx, dgamma, dbeta = tf.gradients(loss, [x, gamma, beta])
        ops = [o.type for o in tf.get_default_graph().get_operations()]
        with tf.Session() as sess:
            out = sess.run(dict(y=y, mean=mean, var=var, dx=dx, dgamma=dgamma, dbeta=dbeta))
    return values, out, ops


@pytest.mark.parametrize('shape,k', [((8, 6, 6, 28), 4), ((4, 8, 8, 12), 4), ((4, 4, 4, 40), 2),
                                     ((6, 4, 4, 7), 16), ((2, 8, 8, 148), 4)])
def test_aligned_view_matches_the_definition_and_the_fused_kernel(shape, k):
    values, aligned, ops = _run(shape, aligned=True)
    assert batch_norm.rows_per_view(tf.zeros(shape)) == k
    assert ops.count('FusedBatchNormGradV3') == 1  # the aligned path's own gradient, not autodiff
    _, plain, _ = _run(shape, aligned=False)
    reference = _reference(**values)
    for name, want in reference.items():
        scale = np.abs(want).max()
        assert np.abs(aligned[name] - want).max() <= 2e-5 * scale, name
        assert np.abs(aligned[name] - plain[name]).max() <= 2e-5 * scale, name


def test_aligned_channels_and_indivisible_rows_use_the_fused_kernel():
    assert batch_norm.rows_per_view(tf.zeros([4, 8, 8, 32])) == 1      # already a multiple of 16
    assert batch_norm.rows_per_view(tf.zeros([3, 3, 3, 12])) == 1      # 27 rows, k would be 4
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 12])
        assert batch_norm.rows_per_view(x) == 4                          # 16 rows per image
        batch_norm.batch_norm_training(tf.zeros([3, 3, 3, 12]), tf.ones([12]), tf.zeros([12]),
                                       EPS, aligned=True)
        ops = [o.type for o in tf.get_default_graph().get_operations()]
    assert ops.count('FusedBatchNormV3') == 1 and 'Reshape' not in ops


def test_unknown_batch_size():
    values = np.random.default_rng(1).normal(size=(5, 4, 4, 12)).astype(np.float32)
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4, 4, 12])
        y, mean, _ = batch_norm.batch_norm_training(x, tf.ones([12]), tf.zeros([12]), EPS,
                                                    aligned=True)
        with tf.Session() as sess:
            y, mean = sess.run([y, mean], {x: values})
    np.testing.assert_allclose(mean, values.mean((0, 1, 2)), atol=1e-6)
    want = (values - values.mean((0, 1, 2))) / np.sqrt(values.var((0, 1, 2)) + EPS)
    np.testing.assert_allclose(y, want, atol=2e-5)


def test_dc40_training_step_equals_the_fused_kernels(synthetic_dir, tmp_path, monkeypatch):
    """One dc40 step through the builder (every BN, 18 of 39 with channels not a multiple of 8, moving
    statistics included) makes the fused kernel's update to float rounding (measured: within
    2.2e-4 of each variable's update, or 1.2e-7)."""
    from tf_benchmarks.models.registry import get_model
    from tf_benchmarks.engine.train_config import TrainConfig
    from tf_benchmarks.engine.trainer import Trainer
    monkeypatch.setattr(batch_norm, 'MIN_ELEMENTS', 0)
    model = get_model('dc40')
    weights = {}
    for key in ('initial', 'aligned', 'fused'):
        monkeypatch.setattr(batch_norm, '_enabled', key == 'aligned')
        config = TrainConfig(num_steps=1 if key != 'initial' else 0, batch_size=8,
                             lr_values=[0.1], display_every=10, summary_every=0,
                             checkpoint_every=0)
        with tf.Graph().as_default():
            run = Trainer(model, model.default_deps, synthetic_dir, config, str(tmp_path / key),
                          log=lambda *_: None)
            ops = [o.type for o in run.graph.get_operations()]
            weights[key] = run.run().weights
        # the aligned view: statistics, normalization and the gradient's correction per BN
        assert ops.count('FusedBatchNormV3') == (21 + 3 * 18 if key == 'aligned' else 39)
    for name, value in weights['fused'].items():
        update = np.abs(value - weights['initial'][name]).max()
        assert update > 0, name
        difference = np.abs(weights['aligned'][name] - value).max()
        assert difference <= 2e-3 * update + 2e-7, (name, difference, update)
