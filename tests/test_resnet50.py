"""`sres50`, the authors' stagewise ResNet-50: layout, channel groups, internal layers, FLOPs under
both conventions (traced at 224 without building a graph), and the graph against the trace at small
sizes (variables, shapes, PyTorch's output sizes at an odd input size)."""

import math

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf_benchmarks.models import resnet50_model as r50
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network import flops
from tf_benchmarks.network.convnet_builder import ConvNetBuilder

MODEL = get_model('sres50')
SMALL = [max(1, d // 8) for d in r50.origin_deps()]


def _scaled(deps, fraction, rounding):
    out = list(deps)
    for i in r50.internal_layers():
        out[i] = int(rounding(deps[i] * fraction))
    return out


def test_widths_groups_and_internal_layers_are_the_authors():
    deps = MODEL.default_deps
    assert len(deps) == 53 and deps[:5] == (64, 256, 64, 64, 256)
    assert deps[11:14] == (512, 128, 128) and deps[43:] == (2048,) + (512, 512, 2048) * 3
    assert r50.PACESETTERS == (1, 11, 24, 43)
    assert r50.internal_layers() == [2, 3, 5, 6, 8, 9, 12, 13, 15, 16, 18, 19, 21, 22, 25, 26, 28,
                                     29, 31, 32, 34, 35, 37, 38, 40, 41, 44, 45, 47, 48, 50, 51]
    trace = MODEL.trace()
    groups = {g.root: g.members for g in trace.groups if len(g.members) > 1}
    assert groups == {p: tuple([p] + [f for f, q in sorted(r50.followers().items()) if q == p])
                      for p in r50.PACESETTERS}
    assert groups[1] == (1, 4, 7, 10)
    assert all(len(trace.group_of(i).members) == 1 for i in r50.internal_layers() + [0])
    assert trace.variables['v0/cg/conv0/conv2d/kernel'].shape == (7, 7, 3, 64)
    assert trace.variables['v0/cg/conv11/conv2d/kernel'].shape == (1, 1, 256, 512)
    assert trace.variables['v0/cg/conv13/conv2d/kernel'].shape == (3, 3, 128, 128)
    assert trace.variables['v0/cg/conv52/batchnorm52/moving_variance'].shape == (2048,)
    assert trace.variables['v0/cg/affine0/dense/kernel'].shape == (2048, 1000)
    assert len(trace.variables) == 53 * 5 + 2 and len(trace.bns) == 53
    assert all(bn.epsilon == 1e-5 for bn in trace.bns)
    assert [trace.convs[i].out_hw for i in (0, 1, 13, 25, 26, 45)] == [
        (112, 112), (56, 56), (28, 28), (28, 28), (14, 14), (7, 7)]
    with pytest.raises(Exception, match='tied to layer 11'):
        MODEL.check_deps([100 if i == 14 else d for i, d in enumerate(deps)])


def test_flops_under_both_conventions_match_the_papers():
    full = MODEL.default_deps
    assert flops.count_flops(MODEL, full) == 4089184256
    assert flops.count_flops(MODEL, full, 'resnet_paper') == 3857973248
    rows = [(0.7, math.floor, 0.3638, 0.3675), (0.6, math.ceil, 0.4588, 0.4624),
            (0.5, round, 0.5544, 0.5577)]
    for fraction, rounding, torchvision, paper in rows:
        deps = _scaled(full, fraction, rounding)
        assert flops.flops_pruned_ratio(MODEL, deps) == pytest.approx(torchvision, abs=5e-5)
        assert flops.flops_pruned_ratio(MODEL, deps, convention='resnet_paper') == \
            pytest.approx(paper, abs=5e-5)
    # other models count the same under both conventions
    vc = get_model('vc')
    assert flops.count_flops(vc, vc.default_deps, 'resnet_paper') == 313463808


@pytest.mark.parametrize('size', [32, 65])
def test_graph_equals_the_trace_at_small_sizes(size):
    deps = list(SMALL)
    deps[3] = 1  # an internal layer down to one channel, as ResRep's final ResNet-50 has
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [2, size, size, 3])
        builder = ConvNetBuilder(images, phase_train=False)
        logits = MODEL.build(builder, deps, 7).tensor
        tensors = {c.index: builder.trace.convs[c.index] for c in builder.trace.convs}
        variables = [(v.op.name, tuple(v.shape.as_list())) for v in tf.global_variables()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits, {images: np.random.default_rng(0).normal(
                size=(2, size, size, 3)).astype(np.float32)})
    trace = MODEL.trace(deps, 7, image_shape=(size, size, 3))
    assert variables == [(n, v.shape) for n, v in trace.variables.items()]
    assert out.shape == (2, 7) and np.isfinite(out).all()
    # PyTorch's output sizes: floor((n + 2p - k) / s) + 1
    stem = (size + 6 - 7) // 2 + 1
    pool = (stem + 2 - 3) // 2 + 1
    assert tensors[0].out_hw == (stem, stem) and tensors[2].out_hw == (pool, pool)
    assert tensors[13].out_hw == ((pool + 2 - 3) // 2 + 1,) * 2
