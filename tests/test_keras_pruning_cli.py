"""A Keras model and a folder of images are the whole input (issue 24): a MobileNet-like Keras
model (Rescaling, ReLU6, depthwise convs, an inverted residual) saved by Keras, a 10-class
ImageFolder of 16x16 JPEGs converted to shards; `import-keras` writes a weight file that carries
its network, so `eval` needs no --model; AOFP prunes it (pruned == masked), C-SGD trims it (the
verification reported), and the pruned files summarize and go back to Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from helpers import run_driver_cases
from tf_benchmarks.files import hdf5_io

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
BASE = 'keras_mobile_scratch_savedweights.hdf5'
COMMON = ['--model', BASE, '--preset', 'smoke', '--batch_size', '16']
PRUNED = 'bds_exps/keras_mobile_reproduce_itr0_prunedweights.hdf5'
TRIMMED = 'keras_mobile_csgd1_itr0_prunedweights.hdf5'


def _image_folder(root):
    """10 classes of 12 16x16 JPEGs, converted with a 25% validation split into 2 + 1 shards."""
    import tensorflow.compat.v1 as tf
    from datasets import build_imagenet_data as converter
    rng = np.random.default_rng(1)
    with tf.Graph().as_default(), tf.Session() as session:
        image = tf.placeholder(tf.uint8, [16, 16, 3])
        jpeg = tf.io.encode_jpeg(image)
        for c in range(10):
            os.makedirs(root / 'images' / ('class%d' % c))
            for i in range(12):
                pixels = np.clip(rng.normal(20 + 22 * c, 30, (16, 16, 3)), 0, 255)
                (root / 'images' / ('class%d' % c) / ('%d.jpg' % i)).write_bytes(
                    session.run(jpeg, {image: pixels.astype(np.uint8)}))
    converter.convert(str(root / 'shards'), str(root / 'images'), validation_fraction=0.25,
                      shards={'train': 2, 'validation': 1}, progress_seconds=1000)
    return str(root / 'shards')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('keras_pruning')
    work = root / 'work'
    work.mkdir()
    subprocess.run([sys.executable, os.path.join(REPO, 'tests', 'keras_models.py'), str(root),
                    'mobile'], check=True, capture_output=True)
    data = ['--data_dir', _image_folder(root)]
    aofp = run_driver_cases(AOFP, [
        (work, ['import-keras', str(root / 'mobile.keras'), '--out', BASE]),
        (work, ['eval', BASE] + data),
        (work, ['prune'] + COMMON + data + ['--itr_schedule', '0.3', '--batches_per_half', '2',
                                            '--metric_limit', '10', '--finetune_epochs', '0.2']),
        (work, ['summary', PRUNED, '--json']),
    ])
    csgd = run_driver_cases(CSGD, [
        (work, ['csgd1'] + COMMON + data + ['--max_epochs', '0.5', '--target_deps', '0.5']),
        (work, ['export-keras', TRIMMED, '--out', 'trimmed.keras']),
    ])
    return work, aofp, csgd


def _ok(outcome):
    assert outcome['code'] == 0, outcome['stderr'][-3000:]
    return outcome


def test_imported_file_carries_its_network_and_evaluates_alone(runs):
    work, (imported, evaluation, _, _), _ = runs
    _ok(imported)
    network = hdf5_io.read_hdf5(str(work / BASE)).network
    assert network['name'] == 'keras_mobile'
    assert [c['op'] for c in network['calls']].count('depthwise_conv') == 2
    line = _ok(evaluation)['stdout']
    assert 'keras_mobile,%s,top1=' % BASE in line and '(30 images)' in line


def test_aofp_prunes_the_imported_network_exactly(runs):
    work, (_, _, prune, summary), _ = runs
    _ok(prune)
    line, = [l for l in prune['stdout'].splitlines()
             if l.startswith('verify: pruned vs tuned (masked)')]
    assert float(line.split('difference ')[1].split(',')[0]) < 1e-5   # pruned == masked
    pruned = hdf5_io.read_hdf5(str(work / PRUNED))
    base = hdf5_io.read_hdf5(str(work / BASE))
    assert sum(pruned.deps) < sum(base.deps) and pruned.network == base.network
    total = json.loads(_ok(summary)['stdout'])['total']
    assert 0 < total['flops_removed'] < 1


def test_csgd_trims_the_imported_network_and_it_goes_back_to_keras(runs):
    work, _, (csgd1, exported) = runs
    _ok(csgd1)
    assert 'biases and depthwise kernels merged with their layers' in csgd1['stdout']
    assert 'verify: trimmed vs untrimmed' in csgd1['stdout']
    trimmed = hdf5_io.read_hdf5(str(work / TRIMMED))
    assert list(trimmed.deps) == [4, 8, 4, 6, 5]   # half of [8, 16, 8, 12, 10]
    _ok(exported)
    assert (work / 'trimmed.keras').stat().st_size > 0
