"""ImageNet-format data through the drivers, in one process per driver: `sres50` trains (smoke) and
evaluates from a synthetic set made by the converter, its file records the input it was trained at,
`summary` and `eval` give both FLOPs conventions, `export` builds its input at the file's size; an
imported torchvision-layout file records torchvision's input and evaluates; the data directory's
format is found or refused, and labels outside the classes are refused as records are read."""

import json
import os
import shutil

import h5py
import pytest

from conftest import REPO
from helpers import error_lines, run_driver_cases
from tf_benchmarks.data import imagenet_records
from tf_benchmarks.files import hdf5_io

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
FIXTURE = os.path.join(REPO, 'tests', 'fixtures', 'torch_resnet50_w16.pth')
SMOKE = ['--model', 'sres50', '--preset', 'smoke']


@pytest.fixture(scope='module')
def imagenet_dir(tmp_path_factory):
    """60 training and 12 validation JPEGs of 10 classes, about 40 pixels, in 3 + 1 shards."""
    from datasets import build_imagenet_data as converter
    path = str(tmp_path_factory.mktemp('imagenet'))
    converter.convert_synthetic(path, 60, 40, 10, seed=0, shards={'train': 3, 'validation': 1})
    return path


def test_sres50_trains_evaluates_summarizes_exports_and_imports(imagenet_dir, tmp_path):
    work = tmp_path / 'run'
    work.mkdir()
    shutil.copy(FIXTURE, work / 'tv.pth')
    data = ['--data_dir', imagenet_dir]
    cases = [
        ['train'] + SMOKE + data + ['--image_size', '32', '--max_epochs', '2', '--eval_every', '0.5'],
        ['eval', 'sres50_scratch_savedweights.hdf5'] + SMOKE + data,
        ['summary', 'sres50_scratch_savedweights.hdf5'],
        ['export', 'sres50_scratch_savedweights.hdf5', '--out', 'exported'],
        ['import', 'tv.pth', '--out', 'imported.hdf5'],
        ['eval', 'imported.hdf5'] + SMOKE + data,
        ['export', 'imported.hdf5', '--out', 'exported_import'],
    ]
    outcomes = run_driver_cases(AOFP, [(work, args) for args in cases])
    for args, outcome in zip(cases, outcomes):
        assert outcome['code'] == 0, (args, outcome['stderr'][-3000:])
    trained = hdf5_io.read_hdf5(str(work / 'sres50_scratch_savedweights.hdf5'))
    assert trained.input_spec.image_size == 32
    assert trained.input_spec.normalization_name == 'inception'
    assert trained.weights['v0/cg/affine0/dense/kernel'].shape == (256, 10)  # the set's classes
    assert len(trained.deps) == 53 and trained.deps[:3] == (8, 32, 8)
    with h5py.File(str(work / 'sres50_scratch_savedweights.hdf5'), 'r') as f:
        assert list(f['input_size'][()]) == [32] and list(f['input_mean'][()]) == [127.5] * 3
    assert [l.split(':')[0] for l in outcomes[0]['stdout'].splitlines() if 'eval top1' in l] == \
        ['step 1', 'step 2', 'step 3']  # --eval_every 0.5: every round(0.5 * 60 / 32) = 1 step
    evaluation = outcomes[1]['stdout']
    assert '(12 images)' in evaluation and 'resnet_paper:' in evaluation
    records = open(work / 'bc_overall_eval_records.txt').read().splitlines()
    assert records[0].startswith('sres50,sres50_scratch_savedweights.hdf5,top1=')
    summary = outcomes[2]['stdout']
    assert "under the ResNet paper's (the stride on the first 1x1)" in summary
    assert 'at 32x32 images' in summary
    info = json.load(open(work / 'exported' / 'export.json'))
    assert info['inputs']['images'] == 'uint8 [batch, 32, 32, 3], RGB, NHWC'
    assert info['outputs']['logits'] == 'float32 [batch, 10]'
    imported = hdf5_io.read_hdf5(str(work / 'imported.hdf5'))
    assert imported.input_spec.image_size == 224
    assert imported.input_spec.normalization_name == 'torchvision'
    assert 'input 224x224, torchvision normalization' in outcomes[4]['stdout']
    assert len(records) == 2 and records[1].startswith('sres50,imported.hdf5,top1=')
    info = json.load(open(work / 'exported_import' / 'export.json'))
    assert info['inputs']['images'] == 'uint8 [batch, 224, 224, 3], RGB, NHWC'
    assert 'mean [123.675, 116.28, 103.53]' in info['preprocessing']


def test_the_data_format_is_found_or_refused(imagenet_dir, synthetic_dir, tmp_path):
    both = tmp_path / 'both'
    shutil.copytree(imagenet_dir, both)
    for name in os.listdir(synthetic_dir):
        shutil.copy(os.path.join(synthetic_dir, name), both / name)
    narrow = tmp_path / 'narrow'  # a manifest of 4 classes over shards of 10
    shutil.copytree(imagenet_dir, narrow)
    manifest = json.load(open(narrow / imagenet_records.MANIFEST_FILE))
    manifest['classes'] = manifest['classes'][:4]
    manifest['num_classes'] = 4
    json.dump(manifest, open(narrow / imagenet_records.MANIFEST_FILE, 'w'))
    empty = tmp_path / 'empty'
    empty.mkdir()
    work = tmp_path / 'work'
    work.mkdir()
    cases = [
        (['train'] + SMOKE + ['--data_dir', str(both)], 'holds both CIFAR-10 tfrecords and '
                                                         'ImageNet-format shards'),
        (['train'] + SMOKE + ['--data_dir', str(empty)], 'no CIFAR-10 train records'),
        (['train'] + SMOKE + ['--data_dir', str(narrow), '--image_size', '16', '--max_epochs',
                              '1'], 'label out of range: record'),
    ]
    outcomes = run_driver_cases(CSGD, [(work, args) for args, _ in cases])
    for (args, expected), outcome in zip(cases, outcomes):
        errors = error_lines(outcome['stderr'])
        assert outcome['code'] == 2 and len(errors) == 1, (args, errors)
        assert expected in outcome['stderr'], (args, outcome['stderr'])
        assert 'Traceback' not in outcome['stderr']
    assert 'datasets/build_imagenet_data.py' in outcomes[1]['stderr']  # how to make either format
    assert 'train-0000' in error_lines(outcomes[2]['stderr'])[0]
    assert 'outside 1 .. 4' in error_lines(outcomes[2]['stderr'])[0]
