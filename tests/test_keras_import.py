"""`import-keras` and `export-keras`. Keras models built and saved by Keras itself
(tests/keras_models.py, in a fresh eager process: a Sequential VGG-like, a ResNet-50-like residual
net, a DenseNet-like nested backbone, a MobileNetV2-like net and keras.applications.MobileNetV2
nested in a model), each as .keras and legacy .h5, imported without Keras and rebuilt with
ConvNetBuilder: the logits must be Keras' pre-softmax outputs. Pruning the imported networks
(AOFP's masks, C-SGD's collapsed clusters) must be exact, through depthwise convolutions too;
refusals name the layer. Exported .keras files, opened by Keras in a fresh process
(tests/load_keras.py), must give the project's logits: a masked `vc` through the driver, `src56`
(SAME_RESNET strides) and an imported network after pruning."""

import os
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from aofp.masked_builder import MaskedConvNetBuilder
from csgd.centripetal import CentripetalHandler
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy import layer_summary
from tf_benchmarks.deploy.export import build_inference_graph
from tf_benchmarks.deploy.keras_export import export_keras_many, record
from tf_benchmarks.deploy.keras_import import import_keras
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.engine.weights import key_variables, load_weights
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.input_spec import InputSpec
from tf_benchmarks.network import flops
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.network.trace import SELECT
from tf_benchmarks.pruning.file_model import read_model_file
from tf_benchmarks.pruning.surgery import apply_surgery, remove_masked

from conftest import REPO
from helpers import error_lines, random_weights, run_driver_cases, run_script

KERAS_MODELS = os.path.join(REPO, 'tests', 'keras_models.py')
LOADER = os.path.join(REPO, 'tests', 'load_keras.py')
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


def test_damaged_keras_files_are_one_error(keras_dir, tmp_path):
    """40 mutations (a run of random bytes written at a random place, or a cut) of a .keras and
    of an .h5 file: each imports or ends in a UserError, never anything else."""
    rng = np.random.default_rng(7)
    outcomes = {'imported': 0, 'refused': 0}
    for ext in ('.keras', '.h5'):
        data = open(_file(keras_dir, 'resnet', ext), 'rb').read()
        for i in range(40):
            mutated = bytearray(data)
            if i % 5 == 4:
                mutated = mutated[:int(rng.integers(len(data)))]
            else:
                at = int(rng.integers(len(data) - 16))
                mutated[at:at + 8] = rng.integers(0, 256, 8).astype(np.uint8).tobytes()
            path = str(tmp_path / ('damaged%d%s' % (i, ext)))
            open(path, 'wb').write(bytes(mutated))
            try:
                import_keras(path)
                outcomes['imported'] += 1
            except UserError as e:
                assert path in str(e) and '\n' not in str(e)
                outcomes['refused'] += 1
    assert outcomes['refused'] >= 20


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
    # the search's score path of the expand layer (1) sits at the projecting conv after the
    # depthwise block: dropping filters there scores them, dropping none scores 0
    with tf.Graph().as_default():
        inputs = tf.constant(normalized(net, pixels))
        builder = MaskedConvNetBuilder(inputs, False, [1], search=True)
        net.add_inference(builder, net.default_deps, net.num_classes)
        with tf.Session() as session:
            load_weights(session, key_variables(builder.trace), net.weights, 'imported')
            scores = [session.run(builder.metrics[1], {builder.dropped_filters[1]: dropped})
                      for dropped in ([], list(range(8)))]
    assert scores[0] == 0 and scores[1] > 1e-4


@pytest.mark.parametrize('name', ['mobile', 'resnet'])
def test_savedmodel_graph_of_an_imported_net_folds_its_biases(keras_dir, name):
    """`export`'s folded inference graph (conv biases folded with their BN, depthwise convs with
    their bias, BNs after them as scale and shift) computes the imported network."""
    net = import_keras(_file(keras_dir, name))
    spec = net.model_spec()
    pixels = np.round(_pixels(keras_dir, name)).astype(np.uint8)
    graph, images, out, _, builder = build_inference_graph(spec, net.default_deps, net.weights,
                                                           net.num_classes, net.input_spec)
    with graph.as_default(), tf.Session(graph=graph) as session:
        session.run(tf.global_variables_initializer())
        builder.load(session)
        folded = session.run(out, {images: pixels})
    assert relative(folded, logits(net, pixels.astype(np.float32))) < 1e-5


def test_summary_of_an_imported_net_adds_up_to_its_flops(keras_dir):
    net = import_keras(_file(keras_dir, 'mobile'))
    spec = net.model_spec()
    summary = layer_summary.summarize(spec, net.default_deps)
    assert [r['kind'] for r in summary['layers'] if r['layer'].startswith('dw')] == \
        ['dw3x3', 'dw3x3/2']
    assert summary['total']['flops'] == flops.count_flops(spec, net.default_deps)
    assert summary['total']['params'] == flops.count_params(spec, net.default_deps)


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


@pytest.fixture(scope='module')
def driver_runs(keras_dir, tmp_path_factory):
    """The driver's import-keras and export-keras cases, run in one process: (directory, {case:
    outcome}). export-keras reads a tuned vc file (AOFP masks) written here."""
    work = tmp_path_factory.mktemp('driver')
    vc = get_model('vc')
    deps = [4, 4, 6, 6, 6, 6, 6, 8, 8, 8, 8, 8, 8]
    hdf5_io.save_hdf5(str(work / 'vc_tuned.hdf5'), random_weights(vc.trace(deps), 0), deps,
                      _group_masks(vc, deps, 1))
    cases = dict(
        imported=['import-keras', _file(keras_dir, 'resnet', '.h5'), '--out', 'r.hdf5'],
        refused=['import-keras', _file(keras_dir, 'lambda_model'), '--out', 'l.hdf5'],
        no_out=['import-keras', _file(keras_dir, 'vgg')],
        wrong_flag=['import-keras', _file(keras_dir, 'vgg'), '--out', 'v.hdf5', '--tflite'],
        exported=['export-keras', 'vc_tuned.hdf5', '--out', 'vc.keras'],
        not_keras=['export-keras', 'vc_tuned.hdf5', '--out', 'vc.h5'],
        no_keras_out=['export-keras', 'vc_tuned.hdf5'])
    outcomes = run_driver_cases(AOFP, [(work, args) for args in cases.values()])
    return work, dict(zip(cases, outcomes))


def test_import_keras_mode_writes_a_weight_file_or_one_error(keras_dir, driver_runs):
    work, runs = driver_runs
    assert runs['imported']['code'] == 0, runs['imported']['stderr'][-2000:]
    assert 'the final softmax was dropped' in runs['imported']['stdout']
    written = hdf5_io.read_hdf5(str(work / 'r.hdf5'))
    net = import_keras(_file(keras_dir, 'resnet'))
    assert written.deps == net.default_deps and written.input_spec == net.input_spec
    assert sorted(written.weights) == sorted(net.weights)
    for case in ('refused', 'no_out', 'wrong_flag', 'not_keras', 'no_keras_out'):
        assert runs[case]['code'] == 2, runs[case]['stderr']
        assert len(error_lines(runs[case]['stderr'])) == 1, runs[case]['stderr']
    assert 'doubler (Lambda)' in runs['refused']['stderr']
    assert '--out FILE.hdf5' in runs['no_out']['stderr']
    assert '--tflite' in runs['wrong_flag']['stderr']
    assert 'NAME.keras' in runs['not_keras']['stderr']
    assert not any(os.path.exists(str(work / n)) for n in ('l.hdf5', 'v.hdf5', 'vc.h5'))


# -- export-keras ------------------------------------------------------------------------------------
def _random_pixels(size, seed):
    return np.random.default_rng(seed).uniform(0, 255, (4, size, size, 3)).astype(np.float32)


def _spec_input(spec, pixels):
    if spec.normalization_name == 'inception':
        return pixels / 127.5 - 1.0   # as the evaluation computes it
    return ((pixels - np.float32(spec.mean)) / np.float32(spec.std)).astype(np.float32)


def _group_masks(model, deps, seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in model.groups:
        mask = (rng.uniform(size=deps[group.root]) > 0.4).astype(np.float32)
        mask[0] = 1
        masks[group.root] = mask
    return masks


def test_exported_keras_models_give_the_projects_logits(keras_dir, driver_runs, tmp_path):
    # the tuned vc file (AOFP masks) the driver exported at its pruned widths
    work, runs = driver_runs
    assert runs['exported']['code'] == 0, runs['exported']['stderr'][-2000:]
    assert 'masked filters removed' in runs['exported']['stdout']
    vc = get_model('vc')
    mf = read_model_file(str(work / 'vc_tuned.hdf5'))
    assert mf.masked and list(mf.deps) != list(mf.file_deps)
    pixels = _random_pixels(32, 2)
    expected = [predict_logits(vc, mf.deps, mf.weights, _spec_input(mf.input_spec, pixels))]
    loads = [(str(work / 'vc.keras'), pixels)]
    # src56 at an eighth of its widths (stride-2 SAME_RESNET convs), and the imported
    # MobileNet-like network (Rescaling, depthwise convs, Add) pruned by AOFP's masks
    src56 = get_model('src56')
    src_deps = [d // 8 for d in src56.default_deps]
    src_weights = random_weights(src56.trace(src_deps), 3)
    net = import_keras(_file(keras_dir, 'mobile'))
    mobile = net.model_spec()
    pruned, mobile_deps = remove_masked(mobile.trace(), net.weights,
                                        _group_masks(mobile, net.default_deps, 4))
    export_keras_many([
        (record(src56, src_deps), src_weights, str(tmp_path / 'src56.keras')),
        (record(mobile, mobile_deps, net.num_classes, net.input_spec), pruned,
         str(tmp_path / 'mobile.keras'))])
    expected.append(predict_logits(src56, src_deps, src_weights, pixels / 127.5 - 1.0))
    loads.append((str(tmp_path / 'src56.keras'), pixels))
    mobile_pixels = _pixels(keras_dir, 'mobile')
    expected.append(predict_logits(mobile, mobile_deps, pruned, normalized(net, mobile_pixels)))
    loads.append((str(tmp_path / 'mobile.keras'), mobile_pixels))

    arguments = []
    for i, (path, images) in enumerate(loads):
        np.save(str(tmp_path / ('images%d.npy' % i)), images)
        arguments += [path, str(tmp_path / ('images%d.npy' % i))]
    run_script(LOADER, [str(tmp_path / 'out.npz')] + arguments, str(tmp_path))
    outputs = np.load(str(tmp_path / 'out.npz'))
    for i, reference in enumerate(expected):
        assert np.abs(reference).max() > 0.1
        assert relative(outputs['out%d' % i], reference) < 1e-5, i
    assert 'Rescaling' in outputs['layers0'] and 'ZeroPadding2D' in outputs['layers1']
    assert list(outputs['layers2']).count('DepthwiseConv2D') == 2


def test_a_max_pool_with_symmetric_padding_of_signed_values_is_refused():
    """sres50's max-pool follows a ReLU, so Keras' zero padding is exact; the same pool on values
    that can be negative cannot be written."""
    class Signed:
        name = 'signed'

        @staticmethod
        def check_deps(deps):
            return tuple(deps)

        @staticmethod
        def build(cnn, deps, num_classes=None):
            cnn.conv(deps[0], 3, 3, activation=None)
            cnn.mpool(3, 3, 2, 2, mode='SAME_RESNET')
            cnn.spatial_mean()
            return cnn.affine(2, activation='linear')
    with pytest.raises(UserError, match='SAME_RESNET'):
        record(Signed, [4], input_spec=InputSpec(16))
    ops = record(get_model('sres50'), [8] * 53)['ops']
    assert [op['op'] for op in ops][:5] == ['input', 'conv', 'batch_norm', 'activation', 'pool']
