"""`--precision bf16_activations`: bfloat16 activations end to end (BN with float32 statistics,
the aligned view at 8 mod 16 channels too), against the float32 and `bf16` graphs on the same
weights and images; and a short training run of each precision."""

import numpy as np
import pytest

import tensorflow.compat.v1 as tf
from tf_benchmarks.engine.evaluation import key_variables, load_weights
from tf_benchmarks.engine.train_config import TrainConfig
from tf_benchmarks.engine.trainer import Trainer
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network import batch_norm
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from helpers import random_images, random_weights, search_metrics
from test_batch_norm import EPS, _reference
from test_trainer import LossRecorder, TINY_VC

NUM_LOGITS = 10
DTYPES = {'fp32': (tf.float32, tf.float32), 'bf16': (tf.bfloat16, tf.float32),
          'bf16_activations': (tf.bfloat16, tf.bfloat16)}


def _bf16_rounded(a):
    """float32 `a` rounded to the nearest bfloat16 (ties to even), as tf.cast rounds."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize('shape,k', [((4, 8, 8, 24), 2), ((8, 6, 6, 28), 4)])
def test_bf16_batch_norm_takes_the_aligned_view_and_matches_the_definition(shape, k, monkeypatch):
    """At 24 channels (8 mod 16) float32 stays on the fused kernel and bfloat16 takes the view
    (oneDNN's bf16 kernel needs whole blocks of 16); both match the float64 definition of the
    bfloat16-rounded input to bfloat16's precision."""
    monkeypatch.setattr(batch_norm, 'MIN_ELEMENTS', 0)
    monkeypatch.setattr(batch_norm, '_enabled', True)
    rng = np.random.default_rng(3)
    c = shape[-1]
    values = dict(x=rng.normal(0.7, 2.0, shape), gamma=rng.uniform(0.5, 1.5, c),
                  beta=rng.uniform(-0.5, 0.5, c), upstream=rng.normal(size=shape))
    values = {n: v.astype(np.float32) for n, v in values.items()}
    # the upstream gradient reaches the bfloat16 BN rounded to bfloat16: round it for both
    values['upstream'] = _bf16_rounded(values['upstream'])
    results = {}
    for dtype in (tf.float32, tf.bfloat16):
        with tf.Graph().as_default() as graph:
            x = tf.cast(tf.constant(values['x']), dtype)
            gamma, beta = tf.constant(values['gamma']), tf.constant(values['beta'])
            y, mean, var = batch_norm.batch_norm_training(x, gamma, beta, EPS)
            assert y.dtype == dtype and mean.dtype == var.dtype == tf.float32
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * values['upstream'])
            dx, dgamma, dbeta = tf.gradients(loss, [x, gamma, beta])
            with tf.Session() as sess:
                out = sess.run(dict(y=tf.cast(y, tf.float32), mean=mean, var=var,
                                    dx=tf.cast(dx, tf.float32), dgamma=dgamma, dbeta=dbeta,
                                    x=tf.cast(x, tf.float32)))
            views = [o for o in graph.get_operations() if o.type == 'FusedBatchNormV3']
        results[dtype] = out
        aligned = dtype == tf.bfloat16 or k > 2
        # the view: statistics, normalization and the gradient's correction; else one fused BN
        assert len(views) == (3 if aligned else 1), dtype
        if aligned:
            assert views[0].inputs[0].shape.as_list()[-1] == k * c
    want = _reference(results[tf.bfloat16]['x'], values['gamma'], values['beta'],
                      values['upstream'])
    for name, tolerance in (('y', 1e-2), ('mean', 1e-5), ('var', 1e-5), ('dx', 2e-2),
                            ('dgamma', 1e-2), ('dbeta', 1e-5)):
        scale = np.abs(want[name]).max()
        error = np.abs(results[tf.bfloat16][name] - want[name]).max()
        assert error <= tolerance * scale, (name, error / scale)
    # bfloat16 is not float32: the output is rounded to 8 bits of mantissa
    assert np.abs(results[tf.bfloat16]['y'] - results[tf.float32]['y']).max() > 1e-4


def _training_graph(model, deps, weights, images, labels, precision):
    """(ops, {logits, loss, gradients by variable name}) of a training-mode graph."""
    conv_dtype, activation_dtype = DTYPES[precision]
    with tf.Graph().as_default() as graph:
        builder = ConvNetBuilder(tf.constant(images), phase_train=True, conv_dtype=conv_dtype,
                                 activation_dtype=activation_dtype)
        logits = model.build(builder, deps, NUM_LOGITS).tensor
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(labels), logits=logits))
        variables = key_variables(builder.trace)
        names = sorted(n for n in variables if n.endswith('kernel'))
        grads = tf.gradients(loss, [variables[n] for n in names])
        with tf.Session() as sess:
            load_weights(sess, variables, weights, 'weights')
            out = sess.run(dict(logits=logits, loss=loss, grads=dict(zip(names, grads))))
        return graph.get_operations(), out


@pytest.mark.parametrize('name,deps', [
    ('dc40', None),                                             # concatenations, odd widths
    ('sres50', None),              # residual additions, SAME_RESNET padding, max-pool
])
def test_bf16_activations_graph_against_float32(name, deps, monkeypatch):
    monkeypatch.setattr(batch_norm, 'MIN_ELEMENTS', 0)
    monkeypatch.setattr(batch_norm, '_enabled', True)
    model = get_model(name)
    if name == 'sres50':
        deps = [d // 4 for d in model.default_deps]
    deps = model.check_deps(deps or model.default_deps)
    weights = random_weights(model.trace(deps, NUM_LOGITS), seed=5)
    images = random_images(8)
    labels = np.arange(8) % 10
    runs = {p: _training_graph(model, deps, weights, images, labels, p) for p in DTYPES}
    ops, out = runs['bf16_activations']
    # every convolution's output and every BN, ReLU, concatenation and addition in bfloat16;
    # float32 from the global pooling on
    typed = {'Conv2D', 'FusedBatchNormV3', 'Relu', 'ConcatV2', 'AddN', 'MaxPool', 'AvgPool'}
    kinds = {o.type for o in ops if o.type in typed and not o.name.startswith('gradients')}
    assert {'Conv2D', 'FusedBatchNormV3', 'Relu'} <= kinds
    for op in ops:
        if op.type in typed and not op.name.startswith('gradients'):
            assert op.outputs[0].dtype == tf.bfloat16, op.name
    assert out['logits'].dtype == np.float32
    # casts of activations (not of kernels): bf16 casts each convolution's input and output,
    # bf16_activations only the images and the pooled features
    casts = {p: sum(o.type == 'Cast' and not o.name.startswith('gradients')
                    and o.inputs[0].shape.rank == 4 and o.inputs[0].shape[0] == 8
                    for o in runs[p][0]) for p in DTYPES}
    convs = sum(o.type == 'Conv2D' for o in ops)
    assert casts['fp32'] == 0 and casts['bf16'] >= 2 * convs - 1, casts
    assert casts['bf16_activations'] <= 2, casts
    reference = runs['fp32'][1]
    scale = np.abs(reference['logits']).max()
    cosines = {}
    errors = {}
    for p in ('bf16', 'bf16_activations'):
        errors[p] = np.abs(runs[p][1]['logits'] - reference['logits']).max() / scale
        # the direction of the whole gradient, as close to float32's as bf16's is (a deep random
        # network at batch 8 is a hard case for both: src56 gives 0.69-0.70, dc40 0.98)
        want = np.concatenate([g.ravel() for _, g in sorted(reference['grads'].items())])
        got = np.concatenate([g.ravel() for _, g in sorted(runs[p][1]['grads'].items())])
        cosines[p] = got @ want / (np.linalg.norm(got) * np.linalg.norm(want))
    if name == 'sres50':  # at 32x32 and batch 8 its last BNs see 8 values: chaos for bf16 too
        assert cosines['bf16'] < 0.5, cosines
        return
    assert errors['bf16_activations'] <= 1.5 * errors['bf16'] + 0.01, errors
    assert cosines['bf16_activations'] >= cosines['bf16'] - 0.05, cosines
    if name == 'dc40':  # well conditioned: both close to float32
        assert max(errors.values()) < 0.01 and min(cosines.values()) > 0.95, (errors, cosines)


def test_bf16_training_lowers_the_loss_like_float32(synthetic_dir, tmp_path):
    losses = {}
    for p in DTYPES:
        config = TrainConfig(num_steps=50, batch_size=16, lr_values=[0.05], display_every=1000,
                             summary_every=0, checkpoint_every=0, precision=p)
        recorder = LossRecorder()
        Trainer(get_model('vc'), TINY_VC, synthetic_dir, config, str(tmp_path / p),
                hooks=[recorder], log=lambda *_: None).run()
        assert np.isfinite(recorder.losses).all()
        losses[p] = (np.mean(recorder.losses[:8]), np.mean(recorder.losses[-8:]))
    for p, (first, last) in losses.items():
        assert last < first - 0.1, losses
        assert abs(last - losses['fp32'][1]) < 0.15, losses


def test_aofp_search_metrics_in_bf16_activations():
    """The masked multi-path graph with bfloat16 activations (a narrow vc, every layer a
    target): every metric close to float32's with drops, and exactly 0 without."""
    model = get_model('vc')
    deps = TINY_VC
    layers = list(range(len(deps)))
    weights = random_weights(model.trace(deps), 3)
    metrics = {}
    for precision in ('fp32', 'bf16_activations'):
        conv_dtype, activation_dtype = DTYPES[precision]
        with_drops, without = search_metrics(model, deps, layers, weights, random_images(8),
                                             conv_dtype=conv_dtype,
                                             activation_dtype=activation_dtype)
        metrics[precision] = np.array(with_drops)
        assert without == [0.0] * len(layers)
    assert (metrics['fp32'] > 1e-3).all(), metrics
    assert np.abs(metrics['bf16_activations'] / metrics['fp32'] - 1).max() < 0.1, metrics
