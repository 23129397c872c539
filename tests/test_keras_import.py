"""`import-keras`: Keras models built and saved by Keras itself (tests/keras_models.py, in a fresh
eager process: a Sequential VGG-like, a ResNet-50-like residual net, a DenseNet-like nested
backbone, a MobileNetV2-like net and keras.applications.MobileNetV2 nested in a model), each as
.keras and legacy .h5, imported without Keras and rebuilt with ConvNetBuilder: the logits must be
Keras' pre-softmax outputs. Pruning the imported networks (AOFP's masks, C-SGD's collapsed
clusters) must be exact, through depthwise convolutions too; refusals name the layer."""

import os
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from aofp.masked_builder import MaskedConvNetBuilder
from csgd.centripetal import CentripetalHandler
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy.keras_import import import_keras
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.engine.weights import key_variables, load_weights
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.network.trace import SELECT
from tf_benchmarks.pruning.surgery import apply_surgery, remove_masked

from conftest import REPO
from helpers import error_lines, run_driver_cases, run_script

KERAS_MODELS = os.path.join(REPO, 'tests', 'keras_models.py')
AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
COMPARED = ('vgg', 'resnet', 'dense', 'mobile', 'mobilenetv2')


@pytest.fixture(scope='module')
def keras_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('keras'))
    run_script(KERAS_MODELS, [path] + list(COMPARED) + ['lambda_model', 'layernorm_model'], path)
    return path


def _file(keras_dir, name, ext='.keras'):
    return os.path.join(keras_dir, name + ext)


def _pixels(keras_dir, name):
    return np.load(os.path.join(keras_dir, name + '_images.npy'))


def normalized(net, pixels):
    return ((pixels - np.float32(net.input_spec.mean)) /
            np.float32(net.input_spec.std)).astype(np.float32)


def logits(net, pixels, deps=None, weights=None, **kwargs):
    return predict_logits(net.model_spec(), deps or net.default_deps, weights or net.weights,
                          normalized(net, pixels), **kwargs)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize('name', COMPARED)
def test_imported_network_gives_keras_logits(keras_dir, name):
    reference = np.load(os.path.join(keras_dir, name + '_logits.npy'))
    assert np.abs(reference).max() > 0.1
    for ext in ('.keras', '.h5'):
        net = import_keras(_file(keras_dir, name, ext))
        assert net.softmax_dropped == (name != 'dense')
        assert relative(logits(net, _pixels(keras_dir, name)), reference) < 1e-5, ext
    if name == 'vgg':  # Sequential; Rescaling(1/127.5, -1) is the inception normalization
        assert net.default_deps == (4, 6, 8) and net.num_classes == 5
        assert net.input_spec.normalization_name == 'inception'
        assert [c.method for c in net.calls] == ['conv', 'conv', 'mpool', 'conv', 'apool',
                                                  'flatten', 'affine', 'affine']
        np.testing.assert_array_equal(net.weights['c3/b3/beta'], np.zeros(8))
        assert 'c1/bias' in net.weights and 'c3/bias' not in net.weights
    if name == 'resnet':  # Normalization(mean, variance) in pixel units
        np.testing.assert_allclose(net.input_spec.mean, (120, 110, 100))
        np.testing.assert_allclose(net.input_spec.std, np.sqrt([3600, 3300, 3000]))
        groups = net.model_spec().trace().groups
        assert len(net.default_deps) == 8 and len(groups) == 6  # proj + b1_3 + b2_3 joined
        assert net.weights['stem/stem_bn/gamma'].shape == (8,)
    if name == 'dense':  # a nested backbone: its layers under backbone/
        assert net.input_spec.mean == (0.0,) * 3 and net.input_spec.std == (1.0,) * 3
        assert 'backbone/s1_conv1/kernel' in net.weights
        assert 'backbone/s0_bn1/gamma' in net.weights   # pre-activation BN, standing alone
    if name == 'mobile':
        trace = net.model_spec().trace()
        assert [d.macs for d in trace.depthwise] == [3 * 3 * 16 * 8 * 8, 3 * 3 * 12 * 4 * 4]
        assert trace.macs == sum(c.macs for c in trace.convs) + 10 * 10 + 9216 + 1728
    if name == 'mobilenetv2':  # keras.applications, alpha 0.35, 32 px, inside a model
        assert len(net.default_deps) == 35 and net.num_classes == 10
        assert len(net.model_spec().trace().depthwise) == 17


def test_refusals_name_the_layer(keras_dir, tmp_path):
    with pytest.raises(UserError, match=r'Keras layer doubler \(Lambda\) cannot be imported: it '
                                        r'holds Python code'):
        import_keras(_file(keras_dir, 'lambda_model'))
    with pytest.raises(UserError, match=r'Keras layer ln \(LayerNormalization\) cannot be '):
        import_keras(_file(keras_dir, 'layernorm_model'))
    bad_zip = str(tmp_path / 'evil.keras')
    with zipfile.ZipFile(_file(keras_dir, 'vgg')) as source, zipfile.ZipFile(bad_zip, 'w') as z:
        for name in source.namelist():
            z.writestr(name, source.read(name))
        z.writestr('../escape.txt', b'x')
    with pytest.raises(UserError, match='absolute or parent path'):
        import_keras(bad_zip)
    linked = str(tmp_path / 'linked.h5')
    with open(_file(keras_dir, 'vgg', '.h5'), 'rb') as f:
        open(linked, 'wb').write(f.read())
    with h5py.File(linked, 'a') as f:
        f['model_weights']['elsewhere'] = h5py.ExternalLink('/etc/passwd', '/x')
    with pytest.raises(UserError, match='ExternalLink'):
        import_keras(linked)


def _roots_and_masks(trace, seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in trace.groups:
        width = trace.convs[group.root].out_channels
        mask = (rng.uniform(size=width) > 0.5).astype(np.float32)
        mask[rng.integers(width)] = 1
        masks[group.root] = mask
    return masks


def test_aofp_masks_of_an_imported_depthwise_net_are_its_pruned_model(keras_dir):
    """Every channel group masked at random (the expand layers feed depthwise convs, whose BN makes
    a masked channel nonzero again: it is masked at the projecting conv's input) -> remove_masked
    gives the same logits at the smaller widths."""
    net = import_keras(_file(keras_dir, 'mobile'))
    trace = net.model_spec().trace()
    masks = _roots_and_masks(trace, 0)
    pixels = _pixels(keras_dir, 'mobile')
    masked = logits(net, pixels, builder_factory=lambda x, phase_train: MaskedConvNetBuilder(
        x, phase_train, sorted(masks)), feed_fn=lambda b: {b.base_masks[t]: m
                                                          for t, m in masks.items()})
    pruned, deps = remove_masked(trace, net.weights, masks)
    assert deps != list(net.default_deps)
    assert pruned['dw/depthwise_kernel'].shape[2] == deps[1]   # the expand layer's width
    assert relative(logits(net, pixels, deps, pruned), masked) < 1e-5
    assert relative(masked, logits(net, pixels)) > 1e-3          # the masks changed the output


def identical_clusters(trace, weights, plans):
    """Copy each cluster survivor's entry of every SELECT slot onto the other members."""
    weights = {n: v.copy() for n, v in weights.items()}
    for layer, clusters in trace.expand_to_groups(plans).items():
        for slot in trace.slots[layer]:
            if slot.kind == SELECT:
                array = np.moveaxis(weights[slot.var], slot.axis, 0)
                for cluster in clusters:
                    for member in cluster:
                        array[slot.offset + member] = array[slot.offset + min(cluster)]
    return weights


def _half_clusters(trace, seed):
    rng = np.random.default_rng(seed)
    plans = {}
    for group in trace.groups:
        width = trace.convs[group.root].out_channels
        labels = rng.integers(0, max(1, width // 2), width)
        labels[:width // 2] = np.arange(width // 2)
        plans[group.root] = [list(np.flatnonzero(labels == k)) for k in range(max(1, width // 2))]
    return plans


@pytest.mark.parametrize('name', ['mobile', 'resnet'])
def test_trimming_identical_clusters_of_an_imported_net_changes_no_output(keras_dir, name):
    net = import_keras(_file(keras_dir, name))
    trace = net.model_spec().trace()
    plans = _half_clusters(trace, 1)
    weights = identical_clusters(trace, net.weights, plans)
    trimmed, deps = apply_surgery(trace, weights, plans)
    assert deps == [max(1, d // 2) for d in net.default_deps]
    pixels = _pixels(keras_dir, name)
    assert relative(logits(net, pixels, deps, trimmed), logits(net, pixels, weights=weights)) \
        < 1e-5


def test_centripetal_rule_pulls_biases_and_depthwise_kernels_together(keras_dir):
    """With no data gradient, one step of lr 1 shrinks every in-cluster difference of the conv
    biases, the depthwise kernels and biases by exactly (1 - strength)."""
    net = import_keras(_file(keras_dir, 'mobile'))
    trace = net.model_spec().trace()
    plans = _half_clusters(trace, 2)
    handler = CentripetalHandler(trace, plans, {b.index: [[c] for c in range(b.channels)]
                                                for b in trace.bns}, 0.0, 0.25)
    assert {'dw/depthwise_kernel', 'dw2/depthwise_kernel', 'dw2/bias', 'head/bias'} <= \
        set(handler.others)
    names = sorted(handler.others)
    with tf.Graph().as_default():
        builder = ConvNetBuilder(tf.zeros([1, 16, 16, 3]), phase_train=False)
        net.add_inference(builder, net.default_deps, net.num_classes)
        pairs = [(tf.zeros_like(builder.variables[n]), builder.variables[n])
                 for n in names + sorted(handler.kernels)]
        grads = handler(pairs)
        with tf.Session() as session:
            load_weights(session, key_variables(builder.trace), net.weights, 'imported')
            stepped = session.run({n: v - g for n, (g, v) in zip(names, grads)})
    values = net.weights
    for name, (matrix, axis) in handler.others.items():
        before = np.moveaxis(values[name], axis, 0)
        after = np.moveaxis(stepped[name], axis, 0)
        survivors = np.argmax(matrix > 0, axis=0)
        spread = before - before[survivors]
        assert np.abs(spread).max() > 1e-3, name
        np.testing.assert_allclose(after - after[survivors], 0.75 * spread, atol=1e-6)


def test_import_keras_mode_writes_a_weight_file_or_one_error(keras_dir, tmp_path):
    cases = [(tmp_path, ['import-keras', _file(keras_dir, 'resnet', '.h5'), '--out', 'r.hdf5']),
             (tmp_path, ['import-keras', _file(keras_dir, 'lambda_model'), '--out', 'l.hdf5']),
             (tmp_path, ['import-keras', _file(keras_dir, 'vgg')]),
             (tmp_path, ['import-keras', _file(keras_dir, 'vgg'), '--out', 'v.hdf5',
                         '--tflite'])]
    ok, refused, no_out, wrong_flag = run_driver_cases(AOFP, cases)
    assert ok['code'] == 0, ok['stderr'][-2000:]
    assert 'the final softmax was dropped' in ok['stdout']
    written = hdf5_io.read_hdf5(str(tmp_path / 'r.hdf5'))
    net = import_keras(_file(keras_dir, 'resnet'))
    assert written.deps == net.default_deps and written.input_spec == net.input_spec
    assert sorted(written.weights) == sorted(net.weights)
    for case in (refused, no_out, wrong_flag):
        assert case['code'] == 2 and len(error_lines(case['stderr'])) == 1, case['stderr']
    assert 'doubler (Lambda)' in refused['stderr']
    assert '--out FILE.hdf5' in no_out['stderr'] and '--tflite' in wrong_flag['stderr']
    assert sorted(os.listdir(tmp_path)) == ['r.hdf5']
