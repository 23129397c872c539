"""Model registry, variable names, FLOPs and parameter counts from deps (no graph needed for most)."""

import pytest

from tf_benchmarks import flops
from tf_benchmarks.convnet_builder import ConvNetBuilder
from tf_benchmarks.errors import UserError
from tf_benchmarks.models import get_model
from tf_benchmarks.models.densenet_model import customized_dc40_deps
from tf_benchmarks.session import tf


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
                                       ('dc40', customized_dc40_deps('2-3-4'))])
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


def test_bad_deps_are_user_errors():
    with pytest.raises(UserError, match='needs 13 widths'):
        get_model('vc').check_deps([64] * 39)
    with pytest.raises(UserError, match='at least one filter'):
        get_model('vc').check_deps([0] * 13)
    with pytest.raises(UserError, match='unknown model'):
        get_model('resnet9000')
