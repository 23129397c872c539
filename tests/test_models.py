"""Model registry, variable names, FLOPs and parameter counts from deps (no graph needed for most)."""

import pytest

from tf_benchmarks.network import flops
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.models.densenet_model import customized_dc40_deps
from tf_benchmarks.models.resnet_model import followers, internal_layers, origin_deps
import tensorflow.compat.v1 as tf


def test_vc_flops_and_params_match_the_original():
    vc = get_model('vc')
    assert flops.count_flops(vc, vc.default_deps) == 313463808
    # conv kernels 14,710,464 + BN gamma/beta 2*4,224 + dense 262,656 + 5,643
    assert flops.count_params(vc, vc.default_deps) == 14710464 + 8448 + 262656 + 5643
    half = [d // 2 for d in vc.default_deps]
    assert flops.flops_pruned_ratio(vc, half) == pytest.approx(0.75, abs=0.002)


def test_dc40_flops_full_and_3_3_3():
    dc40 = get_model('dc40')
    full = flops.count_flops(dc40, dc40.default_deps)
    assert full == 264812928
    assert flops.flops_pruned_ratio(dc40, customized_dc40_deps('3-3-3')) == pytest.approx(0.7874, abs=1e-4)
    assert flops.count_params(dc40, dc40.default_deps) == 1019722


def test_trace_names_follow_the_originals():
    names = list(get_model('vc').trace().variables)
    assert names[:5] == ['v0/cg/conv0/conv2d/kernel', 'v0/cg/conv0/batchnorm0/gamma',
                         'v0/cg/conv0/batchnorm0/beta', 'v0/cg/conv0/batchnorm0/moving_mean',
                         'v0/cg/conv0/batchnorm0/moving_variance']
    assert names[-4:] == ['v0/cg/affine0/dense/kernel', 'v0/cg/affine0/dense/bias',
                          'v0/cg/affine1/dense/kernel', 'v0/cg/affine1/dense/bias']
    trace = get_model('dc40').trace()
    names = list(trace.variables)
    for expected in ('conv0/kernel', 'stage1/block0/conv1/kernel', 'stage1/block0/block0/gamma',
                     'stage1/transition1/conv1/kernel', 'stage1/transition1/transition1/gamma',
                     'stage3/block11/conv1/kernel', 'bnlast/moving_variance', 'fc10/kernel',
                     'fc10/bias'):
        assert expected in names
    assert trace.variables['fc10/kernel'].shape == (448, 10)
    assert [b.scope for b in trace.bns][12] == 'stage1/transition1/transition1'
    assert len(trace.convs) == 39 and len(trace.bns) == 39


@pytest.mark.parametrize('name,deps', [('vc', [8, 8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32]),
                                       ('dc40', customized_dc40_deps('2-3-4')),
                                       ('src56', [d // 4 for d in origin_deps(9)]),
                                       ('src110', origin_deps(18))])
def test_graph_variables_equal_the_trace(name, deps):
    model = get_model(name)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 32, 32, 3])
        builder = ConvNetBuilder(images, phase_train=True)
        logits = model.build(builder, deps).tensor
        graph_vars = [(v.op.name, tuple(v.shape.as_list())) for v in tf.global_variables()]
    trace = model.trace(deps)
    assert graph_vars == [(n, v.shape) for n, v in trace.variables.items()]
    assert logits.shape.as_list() == [None, model.num_classes]
    assert len(builder.update_ops) == 2 * len(trace.bns)


def test_stagewise_resnets_layout_flops_and_groups():
    src56, src110 = get_model('src56'), get_model('src110')
    assert len(src56.default_deps) == 57 and len(src110.default_deps) == 111
    assert src56.default_deps[:19] == (16,) * 19 and src56.default_deps[38:] == (64,) * 19
    assert flops.count_flops(src56, src56.default_deps) == 125747840
    five_eighths = [d * 5 // 8 for d in src56.default_deps]
    assert flops.count_flops(src56, five_eighths) == 49224080
    assert flops.flops_pruned_ratio(src56, five_eighths) == pytest.approx(0.60855, abs=1e-5)
    trace = src56.trace()
    groups = [g for g in trace.groups if len(g.members) > 1]
    assert [(g.root, g.members) for g in groups] == [
        (p, tuple([p] + [p + 2 + 2 * b for b in range(9)])) for p in (0, 19, 38)]
    assert all(trace.group_of(f).root == p for f, p in followers(9).items())
    assert all(len(trace.group_of(i).members) == 1 for i in internal_layers(9))
    assert [len(g.members) for g in src110.trace().groups].count(19) == 3
    names = list(trace.variables)
    assert names[:2] == ['v0/cg/conv0/conv2d/kernel', 'v0/cg/conv0/batchnorm0/gamma']
    assert 'v0/cg/conv19/batchnorm19/moving_variance' in names
    assert trace.variables['v0/cg/conv19/conv2d/kernel'].shape == (1, 1, 16, 32)
    assert trace.variables['v0/cg/conv20/conv2d/kernel'].shape == (3, 3, 16, 32)
    assert names[-2:] == ['v0/cg/affine0/dense/kernel', 'v0/cg/affine0/dense/bias']
    assert trace.variables['v0/cg/affine0/dense/kernel'].shape == (64, 10)
    assert trace.convs[20].out_hw == (16, 16) and trace.convs[38].out_hw == (8, 8)
    with pytest.raises(UserError, match='layer 21 is tied to layer 19 .* got 31 and 32'):
        src56.check_deps([31 if i == 21 else d for i, d in enumerate(src56.default_deps)])


def test_bad_deps_are_user_errors():
    with pytest.raises(UserError, match='needs 13 widths'):
        get_model('vc').check_deps([64] * 39)
    with pytest.raises(UserError, match='at least one filter'):
        get_model('vc').check_deps([0] * 13)
    with pytest.raises(UserError, match='unknown model'):
        get_model('resnet9000')
