"""A network of your own on images of your own through both drivers (issue 24), one process per
driver: a 3-class ImageFolder of 12x12 JPEGs, converted; examples/resnet20.py at tiny widths trains
on it at --image_size 12, AOFP prunes it (--round_to, --min_width; pruned == masked), C-SGD trims
its collapsed clusters exactly, the files evaluate from the file alone and carry the class names
into the exported labels.txt; a changed net.py stops the resumed run, a file naming a .py imports
nothing, and a network the builders cannot express is one error."""

import json
import os

import numpy as np
import pytest

from conftest import REPO
from csgd import clustering
from helpers import error_lines, random_weights, run_driver_cases
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.user_models import load_python_file
from test_description import ADD_ERROR, BAD_ADD

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
NET = os.path.join(REPO, 'examples', 'resnet20.py')
DEPS = [4] * 7 + [8] * 14
SMOKE = ['--model', NET, '--preset', 'smoke', '--batch_size', '16']
PRUNE = ['--batches_per_half', '2', '--metric_limit', '10', '--finetune_epochs', '0.2']
CLASSES = ('cat', 'dog', 'emu')


def _image_folder(root):
    """3 classes of 40 12x12 JPEGs (class c's pixels around 60 + 70c), converted with a 25%
    validation split into 2 + 1 shards."""
    import tensorflow.compat.v1 as tf
    from datasets import build_imagenet_data as converter
    rng = np.random.default_rng(0)
    with tf.Graph().as_default(), tf.Session() as session:
        image = tf.placeholder(tf.uint8, [12, 12, 3])
        jpeg = tf.io.encode_jpeg(image)
        for c, name in enumerate(CLASSES):
            os.makedirs(root / 'images' / name)
            for i in range(40):
                pixels = np.clip(rng.normal(60 + 70 * c, 30, (12, 12, 3)), 0, 255)
                (root / 'images' / name / ('%d.jpg' % i)).write_bytes(
                    session.run(jpeg, {image: pixels.astype(np.uint8)}))
    converter.convert(str(root / 'shards'), str(root / 'images'), validation_fraction=0.25,
                      shards={'train': 2, 'validation': 1}, progress_seconds=1000)
    return str(root / 'shards')


def _collapsed_init(work):
    """The trained base with every channel group's even clusters (target 1/2) made identical,
    which C-SGD training keeps identical, so its trim must be exact."""
    model = load_python_file(NET)
    base = hdf5_io.read_hdf5(str(work / 'resnet20_scratch_savedweights.hdf5'))
    trace = model.trace(base.deps)
    weights = {k: v.copy() for k, v in base.weights.items()}
    plans = {g.root: clustering.even_clusters(base.deps[g.root], base.deps[g.root] // 2)
             for g in model.groups}
    for layer, clusters in trace.expand_to_groups(plans).items():
        kernel = weights[trace.convs[layer].kernel]
        for cluster in clusters:
            kernel[..., cluster] = kernel[..., [min(cluster)]]
    for bn in trace.bns:
        for role in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            vector = weights['%s/%s' % (bn.scope, role)]
            for cluster in clustering.bn_channel_clusters(trace, plans)[bn.index]:
                vector[cluster] = vector[min(cluster)]
    hdf5_io.save_hdf5(str(work / 'collapsed.hdf5'), weights, base.deps, network=model.network)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('own')
    shards = _image_folder(root)
    work, hostile = root / 'work', root / 'hostile'
    for d in (work, hostile):
        d.mkdir()
    changed = root / 'resnet20.py'
    changed.write_text(open(NET).read().replace("cnn.spatial_mean()", "cnn.relu()\n        "
                                                "cnn.spatial_mean()"))
    (root / 'bad_add.py').write_text(BAD_ADD)
    marker = root / 'imported'
    (root / 'evil.py').write_text('open(%r, "w").write("x")\n' % str(marker))
    net = load_python_file(NET)
    hdf5_io.save_hdf5(str(hostile / 'evil.hdf5'), random_weights(net.trace(DEPS, 3), 0), DEPS,
                      network=dict(net.network, name='evil.py'))
    (hostile / 'run.json').write_text(json.dumps({'commands': [{'argv': [
        'x', 'prune', '--model', str(root / 'evil.py')]}], 'stages': {}}))
    data = ['--data_dir', shards, '--image_size', '12']
    deps = ['--deps', ','.join(map(str, DEPS))]
    fted = 'bds_exps/resnet20_reproduce_itr0_ftedweights.hdf5'
    widths = ['--round_to', '2', '--min_width', '2']
    aofp = run_driver_cases(AOFP, [
        (work, ['train'] + SMOKE + data + deps + ['--max_epochs', '1']),
        (work, ['prune'] + SMOKE + data + PRUNE + ['--itr_schedule', '0.3'] + widths),
        (work, ['eval', fted, '--data_dir', shards]),
        (work, ['prune', '--model', str(changed)] + SMOKE[2:] + data + PRUNE +
         ['--itr_schedule', '0.3'] + widths),
        (hostile, ['eval', 'evil.hdf5', '--data_dir', shards]),
        (work, ['train', '--model', str(root / 'bad_add.py'), '--data_dir', shards]),
    ])
    _collapsed_init(work)
    csgd = run_driver_cases(CSGD, [
        (work, ['csgd1'] + SMOKE + data + widths + [
            '--init_hdf5', 'collapsed.hdf5', '--cluster_method', 'even', '--target_deps', '1/2',
            '--max_epochs', '1']),
        (work, ['export', 'resnet20_csgd1_itr0_prunedweights.hdf5', '--out', 'exported']),
    ])
    return dict(work=work, marker=marker, aofp=aofp, csgd=csgd)


def _ok(outcome):
    assert outcome['code'] == 0, outcome['stderr'][-3000:]
    return outcome


def test_aofp_prunes_a_user_network_to_multiples_and_the_file_evaluates_alone(runs):
    train, prune, evaluation = (_ok(o) for o in runs['aofp'][:3])
    work = runs['work']
    tuned = hdf5_io.read_hdf5(str(work / 'bds_exps/resnet20_reproduce_itr0_tunedweights.hdf5'))
    assert tuned.network == load_python_file(NET).network
    model = load_python_file(NET)
    assert sorted(tuned.masks) == list(model.default_target_layers)  # every group feeds a conv/FC
    fted = hdf5_io.read_hdf5(str(work / 'bds_exps/resnet20_reproduce_itr0_ftedweights.hdf5'))
    assert fted.deps != tuple(DEPS) and all(d % 2 == 0 and d >= 2 for d in fted.deps)
    for layer, mask in tuned.masks.items():
        assert fted.deps[layer] == int(mask.sum())
    log = (work / 'bds_exps/resnet20_reproduce_itr0_bdslog.txt').read_text()
    line, = [l for l in log.splitlines() if l.startswith('verify: pruned vs tuned (masked)')]
    assert float(line.split('difference ')[1].split(',')[0]) < 1e-5   # pruned == masked
    assert evaluation['stdout'].startswith('top1 ') and 'deps %s' % list(fted.deps) in \
        evaluation['stdout']
    record = json.loads((work / 'run.json').read_text())
    digest, = record['networks']
    assert record['stages']['itr0.search']['settings']['network_sha256'] == digest
    assert record['stages']['itr0.search']['settings']['round_to'] == 2


def test_a_changed_network_stops_the_resumed_run(runs):
    changed = runs['aofp'][3]
    assert changed['code'] == 2
    assert 'itr0.search: network_sha256 was' in changed['stderr']
    assert '--model now builds another network' in changed['stderr']


def test_a_file_naming_a_py_file_imports_nothing(runs):
    _ok(runs['aofp'][4])
    assert not runs['marker'].exists()


def test_a_network_the_builders_cannot_express_is_one_error(runs):
    bad = runs['aofp'][5]
    assert bad['code'] == 2
    assert error_lines(bad['stderr']) == ['error: ' + ADD_ERROR.replace(
        'net.py', str(runs['work'].parent / 'bad_add.py'))]


def test_csgd_trims_collapsed_clusters_of_a_user_network_exactly(runs):
    _ok(runs['csgd'][0])
    work = runs['work']
    results = json.loads((work / 'results.json').read_text())['runs']
    trimmed = results['csgd1']['iterations'][0]['trimmed']
    assert trimmed['verify']['enforced'] is True and trimmed['verify']['max_rel_logit_diff'] < 1e-5
    assert trimmed['widths'] == [2] * 7 + [4] * 14
    settings = json.loads((work / 'run.json').read_text())['stages']['csgd1.itr0.train']['settings']
    assert settings['min_width'] == 2 and settings['round_to'] == 2
    assert settings['num_classes'] == 3


def test_the_image_folder_classes_travel_into_the_files_and_the_export(runs):
    _ok(runs['csgd'][1])
    work = runs['work']
    for name in ('resnet20_scratch_savedweights.hdf5', 'resnet20_csgd1_itr0_prunedweights.hdf5',
                 'bds_exps/resnet20_reproduce_itr0_ftedweights.hdf5'):
        f = hdf5_io.read_hdf5(str(work / name))
        assert f.class_names == CLASSES and f.input_spec.image_size == 12
        assert f.weights['v0/cg/affine0/dense/bias'].shape == (3,)
    exported = work / 'exported'
    assert (exported / 'labels.txt').read_text() == 'cat\ndog\nemu\n'
    info = json.loads((exported / 'export.json').read_text())
    assert info['class_names'] == list(CLASSES) and info['model'] == 'resnet20'
    assert info['inputs']['images'].startswith('uint8 [batch, 12, 12, 3]')
