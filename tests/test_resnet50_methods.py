"""Both methods on `sres50`: exact at uneven widths down to one channel (C-SGD's trim of collapsed
clusters and AOFP's physical pruning compute the untrimmed / masked logits), C-SGD's targets on the
internal layers with the paper rows' rounding, the paper presets' step and LR arithmetic at global
batch 256, and no weight decay on clustered kernels (the authors' ImageNet recipe)."""

import math

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from aofp.pipeline import base_train_config, finetune_config, masked_builder_factory, search_config
from aofp.presets import PRESETS as AOFP_PRESETS
from csgd import clustering
from csgd.centripetal import CentripetalHandler, centripetal_gradient
from csgd.pipeline import _config as csgd_config
from csgd.presets import PRESETS as CSGD_PRESETS
from csgd.targets import parse_target_deps, target_layers
from helpers import random_images, random_weights
from test_surgery import assert_same_logits, make_clusters_identical
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.models import resnet50_model as r50
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network import flops
from tf_benchmarks.pruning.surgery import apply_surgery, remove_masked

MODEL = get_model('sres50')
SMALL = [max(1, d // 8) for d in MODEL.default_deps]   # 8 / 16 / 32 / 64 inside, x4 outside
IMAGENET = 1281167


def test_csgd_trim_is_exact_at_uneven_widths_down_to_one_channel():
    trace = MODEL.trace(SMALL)
    rng = np.random.default_rng(7)
    plans = {}
    for layer in r50.internal_layers() + [0, 11]:   # internal layers, the stem, a stage's group
        width = SMALL[layer]
        k = 1 if layer in (3, 13) else int(rng.integers(1, width + 1))
        labels = rng.integers(0, k, width)
        labels[:k] = np.arange(k)
        plans[layer] = [list(np.flatnonzero(labels == c)) for c in range(k)]
    expanded = trace.expand_to_groups(plans)
    weights = make_clusters_identical(trace, random_weights(trace, 8), expanded)
    trimmed, new_deps = apply_surgery(trace, weights, plans)
    assert new_deps[3] == new_deps[13] == 1 and new_deps[11] == new_deps[14] == len(plans[11])
    assert trimmed['v0/cg/conv14/conv2d/kernel'].shape[-1] == len(plans[11])
    assert_same_logits(MODEL, SMALL, weights, new_deps, trimmed)


def test_aofp_pruned_equals_masked_at_uneven_widths_down_to_one_channel():
    trace = MODEL.trace(SMALL)
    weights = random_weights(trace, 9)
    rng = np.random.default_rng(10)
    layers = r50.internal_layers()
    masks = {}
    for layer in layers:
        mask = (rng.uniform(size=SMALL[layer]) > 0.5).astype(np.float32)
        mask[rng.integers(SMALL[layer])] = 1
        masks[layer] = mask
    masks[2] = np.eye(SMALL[2], dtype=np.float32)[0]   # one channel left
    images = random_images()
    masked = predict_logits(MODEL, SMALL, weights, images,
                            builder_factory=masked_builder_factory(layers),
                            feed_fn=lambda b: {b.base_masks[i]: masks[i] for i in layers})
    pruned, deps = remove_masked(trace, weights, masks)
    assert deps[2] == 1 and deps[5] == int(masks[5].sum())
    small = predict_logits(MODEL, deps, pruned, images)
    assert np.abs(masked).max() > 1e-2
    np.testing.assert_allclose(small, masked, atol=1e-4 * np.abs(masked).max(), rtol=0)


def test_csgd_targets_are_the_internal_layers_with_the_paper_rows_rounding():
    full = MODEL.default_deps
    rows = {'c70': [36.75], 'c60': [36.75, 46.24], 'c50': [36.75, 46.24, 55.77]}
    for preset, expected in rows.items():
        targets = parse_target_deps(MODEL, full, CSGD_PRESETS[preset]['sres50'].target_deps)
        assert [round(100 * flops.flops_pruned_ratio(MODEL, t, convention='resnet_paper'), 2)
                for t in targets] == expected
        for target in targets:
            changed = [i for i, (a, b) in enumerate(zip(full, target)) if a != b]
            assert changed == r50.internal_layers()
    seventy, sixty = parse_target_deps(MODEL, full, '0.7,up:0.6')
    assert (seventy[2], seventy[12], sixty[2], sixty[12]) == (44, 89, 39, 77)  # 64 x .7, .6 ...
    assert parse_target_deps(MODEL, full, '0.6')[0][2] == 38                   # down by default
    # --target_layers: a group named by its first layer shrinks every member
    one = parse_target_deps(MODEL, full, '0.5', layers=[11])[0]
    assert [i for i, (a, b) in enumerate(zip(full, one)) if a != b] == [11, 14, 17, 20, 23]
    assert target_layers(get_model('src56')) == list(range(57))   # CIFAR models: every layer
    with pytest.raises(UserError, match='layer 14 is tied to layer 11'):
        target_layers(MODEL, [14])


def test_paper_presets_turn_epochs_into_steps_at_global_batch_256():
    c70 = CSGD_PRESETS['c70']['sres50']
    config = csgd_config(c70, c70.max_epochs, c70.lr_values, c70.lr_epoch_fractions, IMAGENET)
    assert config.num_steps == 70 * IMAGENET // 256 == 350319
    assert config.lr_boundaries == [30 * 5004, 50 * 5004, 60 * 5004]
    assert config.lr_values == pytest.approx((3e-3, 3e-4, 3e-5, 3e-6))
    assert (config.nesterov, config.double_gradient_keywords) == (False, ())
    assert c70.clustered_weight_decay == 0.0 and c70.weight_decay == 1e-4
    doubled = csgd_config(dict_replace(c70, batch_size=512), 70, c70.lr_values,
                          c70.lr_epoch_fractions, IMAGENET)
    assert doubled.lr_values[0] == pytest.approx(6e-3) and doubled.num_steps == 175159
    c1 = AOFP_PRESETS['c1']['sres50']
    base = base_train_config(c1, IMAGENET)
    assert base.num_steps == math.floor(90 * IMAGENET / 256) == 450410
    assert base.lr_boundaries == [150135, 300272, 400363] and base.warmup_steps == 25022
    assert base.lr_values[0] == pytest.approx(0.1) and not base.nesterov
    assert search_config(c1, IMAGENET).num_steps == 50045
    finetune = finetune_config(c1, IMAGENET)
    assert finetune.cosine and finetune.lr_values == pytest.approx((0.01,))
    assert (c1.itr_schedule, AOFP_PRESETS['c2']['sres50'].itr_schedule) == ((0.3288,), (0.5673,))
    assert c1.flops_convention == 'resnet_paper'
    assert c1.target_layers == tuple(r50.internal_layers())


def dict_replace(settings, **fields):
    import dataclasses
    return dataclasses.replace(settings, **fields)


def test_no_weight_decay_on_clustered_kernels():
    trace = MODEL.trace(SMALL)
    plans = {l: [[i] for i in range(SMALL[l])] for l in (0, 1)}  # singletons: decayed as usual
    plans[2] = clustering.even_clusters(SMALL[2], 2)              # clustered: no decay
    bn_plans = clustering.bn_channel_clusters(trace, plans)
    handler = CentripetalHandler(trace, plans, bn_plans, 1e-4, 0.05, 0.005, 0.0)
    names = [trace.convs[l].kernel for l in (0, 2)]
    rng = np.random.default_rng(11)
    with tf.Graph().as_default():
        variables = {n: tf.Variable(rng.normal(size=trace.variables[n].shape).astype(np.float32),
                                    name=n)
                     for n in trace.variables if trace.variables[n].trainable}
        grads = {n: tf.constant(rng.normal(size=v.shape.as_list()).astype(np.float32))
                 for n, v in variables.items()}
        out = dict(zip(variables, (g for g, _ in handler([(grads[n], variables[n])
                                                           for n in variables]))))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            new, g, w = sess.run([[out[n] for n in names], [grads[n] for n in names],
                                  [variables[n] for n in names]])
    np.testing.assert_allclose(new[0], g[0] + 1e-4 * w[0], rtol=1e-5, atol=1e-7)   # the stem
    n = SMALL[2]
    expected = centripetal_gradient(g[1].reshape(-1, n).T, w[1].reshape(-1, n).T, plans[2], 0.0,
                                    0.05).T.reshape(w[1].shape)
    np.testing.assert_allclose(new[1], expected, rtol=1e-5, atol=1e-6)
