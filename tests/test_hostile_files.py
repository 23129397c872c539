"""Hostile and odd files end with one clear error, never a traceback: labels outside the data set's
classes (named by file and record, before anything is written), weights files with bad widths or
masks, odd converter inputs, and a fuzz of every file kind a user can give (a fixed number of
mutations with a fixed seed) that accepts only a correct load or the loader's UserError."""

import io
import os
import pickle
import shutil
import tarfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from helpers import error_lines, random_weights, run_driver_cases
from test_bad_inputs import VC_FLAGS, VC_TINY, _tree
from csgd.clusters_file import load_clusters, save_clusters
from datasets import download_and_convert_cifar10 as converter
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import input_pipeline, labels as data_labels, records
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import from_description, get_model
from tf_benchmarks.network import description
from tf_benchmarks.pruning.file_model import model_of_file
from tf_benchmarks.files.safe_pickle import safe_load

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CONVERTER = os.path.join(REPO, 'datasets', 'download_and_convert_cifar10.py')
MUTATIONS = 40
SEED = 21


# -- making files ----------------------------------------------------------------------------------
def _relabel(source, dest, changes):
    """Copy a tfrecord file with the labels of some records changed ({index: label})."""
    with tf.io.TFRecordWriter(str(dest)) as writer:
        for i, raw in enumerate(tf.compat.v1.io.tf_record_iterator(source)):
            example = tf.train.Example.FromString(raw)
            if i in changes:
                example.features.feature[records.LABEL_KEY].int64_list.value[:] = [changes[i]]
            writer.write(example.SerializeToString())


def _data_dir(root, name, synthetic_dir, train=None, test=None, labels_txt=None):
    """A copy of the synthetic data with relabelled records in train / test."""
    d = root / name
    os.makedirs(d)
    for split, changes in (('train', train), ('test', test)):
        source = records.split_path(synthetic_dir, split)
        if changes:
            _relabel(source, d / os.path.basename(source), changes)
        else:
            shutil.copy(source, d)
    (d / 'labels.txt').write_text(labels_txt or ''.join('%d:c%d\n' % (i, i) for i in range(10)))
    return d


SRC56_TINY = [d // 8 for d in get_model('src56').default_deps]


def _weights_file(path, deps=VC_TINY, masks=None, raw_deps=None):
    weights = random_weights(get_model('vc').trace(VC_TINY), 0)
    hdf5_io.save_hdf5(str(path), weights, None if raw_deps is not None else deps, masks)
    if raw_deps is not None:
        with h5py.File(path, 'a') as f:
            f.create_dataset('deps', data=raw_deps)
    return path


def _batch(n, data=None, labels=None):
    """A pickled batch's dict of n images; `data(n)` / `labels(n)` replace the pixels / labels."""
    rng = np.random.default_rng(n)
    return {b'batch_label': b'fake', b'filenames': [b'f%d.png' % i for i in range(n)],
            b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data(n),
            b'labels': [int(x) for x in rng.integers(0, 10, n)] if labels is None else labels(n)}


def _batches_dir(path, **kwargs):
    os.makedirs(path)
    for i, name in enumerate(converter.TRAIN_BATCHES + (converter.TEST_BATCH,)):
        (path / name).write_bytes(pickle.dumps(_batch(4 + i, **kwargs), protocol=2))
    return path


# -- labels ----------------------------------------------------------------------------------------
def test_labels_are_checked_against_the_classes(tmp_path, synthetic_dir):
    """vc keeps 11 logits for 10 classes: label 10 is refused all the same; a labels.txt of 5
    classes refuses label 7; the test split is checked when the training data is opened."""
    cases = [('ten', dict(train={3: 10}), 'record 3 of .*cifar10_train.tfrecord has the label 10, '
                                          'but the data set has 10 classes'),
             ('five', dict(train={i: 7 if i == 8 else i % 5 for i in range(640)},
                           test={i: i % 5 for i in range(200)},
                           labels_txt=''.join('%d:c\n' % i for i in range(5))),
              'record 8 .* has the label 7, but the data set has 5 classes'),
             ('test_split', dict(test={2: 12}), 'record 2 of .*cifar10_test.tfrecord has the label '
                                                '12')]
    for name, changes, message in cases:
        d = _data_dir(tmp_path, name, synthetic_dir, **changes)
        with pytest.raises(UserError, match=message):
            input_pipeline.RecordData(str(d))
    assert input_pipeline.RecordData(synthetic_dir).num_examples == 640


@pytest.mark.parametrize('text, problem', [
    ('0:a\n2:b\n', 'line 2 is .*expected 1:NAME'), ('', 'lists no class'), ('0:a\nb\n', 'line 2'),
    (b'0:\xff\n', 'not UTF-8'), ('9' * 5000 + ':x\n', 'line 1'), (None, 'Is a directory')])
def test_malformed_labels_txt_is_a_user_error(tmp_path, text, problem):
    path = tmp_path / 'labels.txt'
    if text is None:
        os.makedirs(path)
    else:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match=problem):
        data_labels.class_names(str(tmp_path))


# -- weights files ---------------------------------------------------------------------------------
@pytest.mark.parametrize('raw_deps, problem', [
    (np.array([np.nan] + VC_TINY[1:], np.float64), 'gives layer 0 the width nan'),
    (np.array(VC_TINY[:5] + [-4] + VC_TINY[6:]), 'gives layer 5 the width -4'),
    (np.array(VC_TINY[:-1] + [10 ** 12]), 'gives layer 12 the width 1000000000000'),
    (np.array([4.5] + VC_TINY[1:]), 'gives layer 0 the width 4.5'),
    (np.array([VC_TINY]), 'shape \\(1, 13\\), not a list of widths'),
    (np.array(VC_TINY, bool), 'bool array'),
], ids=['nan', 'negative', 'huge', 'fraction', '2-D', 'bool'])
def test_bad_widths_in_a_weights_file(tmp_path, raw_deps, problem):
    path = _weights_file(tmp_path / 'w.hdf5', raw_deps=raw_deps)
    with pytest.raises(UserError, match=problem):
        hdf5_io.read_hdf5(str(path))


def test_bad_masks_in_a_weights_file(tmp_path):
    for masks, problem in (({3: np.full(8, np.nan)}, 'holds values outside 0..1'),
                           ({3: np.ones((2, 4))}, 'has shape \\(2, 4\\)')):
        with pytest.raises(UserError, match='base_mask_value3 ' + problem):
            hdf5_io.read_hdf5(str(_weights_file(tmp_path / 'm.hdf5', masks=masks)))


# -- through the command lines ---------------------------------------------------------------------
def _expect_errors(script, cases, tmp_path, prefix):
    """Run (args, expected) cases, each in a fresh directory holding an earlier file; each must
    exit 2 with one `error:` line and leave its directory unchanged."""
    work = []
    for i, (args, _) in enumerate(cases):
        cwd = tmp_path / ('%s%d' % (prefix, i))
        os.makedirs(cwd)
        (cwd / 'earlier_log.txt').write_text('an earlier run\n')
        work.append((cwd, args))
    before = [_tree(cwd) for cwd, _ in work]
    outcomes = run_driver_cases(script, work)
    for (args, expected), outcome, (cwd, _), tree in zip(cases, outcomes, work, before):
        assert outcome['code'] == 2, (args, outcome)
        lines = error_lines(outcome['stderr'])
        assert len(lines) == 1 and expected in lines[0], (args, outcome['stderr'])
        assert 'Traceback' not in outcome['stderr']
        assert _tree(cwd) == tree, args


def test_aofp_hostile_data_and_weights(tmp_path, synthetic_dir):
    made = tmp_path / 'made'
    dirs = {name: str(_data_dir(made, name, synthetic_dir, **changes)) for name, changes in (
        ('eleven', dict(train={i: 11 for i in range(5, 640)})), ('ten', dict(train={0: 10})),
        ('negative', dict(train={639: -1})), ('test_ten', dict(test={199: 10})))}
    as_dir = made / 'record_dir'
    shutil.copytree(synthetic_dir, as_dir)
    os.remove(as_dir / 'cifar10_train.tfrecord')
    os.makedirs(as_dir / 'cifar10_train.tfrecord')
    nan = _weights_file(made / 'nan.hdf5', raw_deps=np.array([np.nan] + VC_TINY[1:]))
    fraction = _weights_file(made / 'fraction.hdf5', raw_deps=np.array([4.5] + VC_TINY[1:]))
    no_layer = _weights_file(made / 'no_layer.hdf5', masks={13: np.ones(8)})
    plain = _weights_file(made / 'plain.hdf5')
    data = ['--data_dir', synthetic_dir]
    train = ['train', '--max_epochs', '0.1'] + VC_FLAGS + ['--data_dir']  # one step before
    _expect_errors(AOFP, [
        (train + [dirs['eleven']], 'record 5 of %s/cifar10_train.tfrecord has the label 11, but '
                                   'the data set has 10 classes' % dirs['eleven']),
        (train + [dirs['ten']], 'record 0 of %s/cifar10_train.tfrecord has the label 10'
         % dirs['ten']),
        (train + [dirs['negative']], 'record 639 of %s/cifar10_train.tfrecord has the label -1'
         % dirs['negative']),
        (train + [dirs['test_ten']], 'record 199 of %s/cifar10_test.tfrecord has the label 10'
         % dirs['test_ten']),
        (['eval', str(plain), '--data_dir', dirs['test_ten']], 'record 199 of'),
        (train + [str(as_dir)], 'cifar10_train.tfrecord is a directory, not a tfrecord file'),
        (['eval', str(nan)] + data, 'deps gives layer 0 the width nan'),
        (['eval', str(fraction)] + data, 'deps gives layer 0 the width 4.5'),
        (['eval', str(no_layer)] + data, 'mask base_mask_value13 names no layer vc searches'),
    ], tmp_path, 'aofp')


def test_converter_odd_inputs(tmp_path):
    made = tmp_path / 'made'
    os.makedirs(made)
    pixels = _batches_dir(made / 'pixels', data=lambda n: np.full((n, 3072), 300, np.int16))
    two_d = _batches_dir(made / 'two_d', labels=lambda n: np.zeros((n, 2), np.int64))
    floats = _batches_dir(made / 'floats', labels=lambda n: [2.5] * n)
    as_dir = _batches_dir(made / 'as_dir')
    os.remove(as_dir / 'data_batch_1')
    os.makedirs(as_dir / 'data_batch_1')
    (made / 'a_file').write_text('not a folder\n')
    out = ['--dataset_dir', 'out']
    _expect_errors(CONVERTER, [
        (out + ['--batches_dir', str(pixels)], 'pixel values outside 0..255 (300..300)'),
        (out + ['--batches_dir', str(two_d)], 'labels of shape (4, 2)'),
        (out + ['--batches_dir', str(floats)], 'has labels of type float64'),
        (out + ['--batches_dir', str(as_dir)], 'data_batch_1 is a directory, not a batch file'),
        (out + ['--synthetic', '20', '--synthetic_test', '-5'], '--synthetic_test needs at least'),
        (out + ['--synthetic', '20', '--seed', '-1'], '--seed must not be negative'),
        (['--dataset_dir', str(made / 'a_file'), '--synthetic', '20'],
         'is a file, not a directory'),
    ], tmp_path, 'conv')


# -- fuzz ------------------------------------------------------------------------------------------
def _mutate(raw, rng):
    """One of: flipped bytes, a truncation, inserted random bytes, a duplicated chunk."""
    n, kind = len(raw), rng.integers(4)
    data = bytearray(raw)
    if kind == 0:
        for at in rng.integers(0, n, rng.integers(1, 5)):
            data[at] ^= int(rng.integers(1, 256))
    elif kind == 1:
        del data[int(rng.integers(0, n)):]
    elif kind == 2:
        at = int(rng.integers(0, n + 1))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    else:
        start = int(rng.integers(0, n))
        chunk = data[start:start + int(rng.integers(1, 65))]
        at = int(rng.integers(0, n + 1))
        data[at:at] = chunk
    return bytes(data)


def _read_records(path):
    records.count_records(path)
    data_labels.check_labels(path, records.CLASS_NAMES)
    return input_pipeline.load_split(path)


def _read_archive(path):
    return converter.read_archive(path)


def _read_batch(path):
    with open(path, 'rb') as f:
        converter.load_batch(f, path)
    with open(path, 'rb') as f:
        try:
            safe_load(f, encoding='bytes')
        except pickle.UnpicklingError as e:  # the unpickler's one error for broken bytes
            raise UserError(str(e))


def _labels_txt(path):
    return data_labels.read_class_names(path)


def _originals(tmp_path, synthetic_dir):
    """{kind: (file name, valid bytes, loader)} for every file kind a user can give."""
    weights = _weights_file(tmp_path / 'w.hdf5', masks={0: np.array([1, 0, 1, 1], np.float32)})
    clusters = {0: [[0, 1], [2, 3]], 5: [[0], [1, 2, 3, 4, 5, 6, 7]]}
    save_clusters(str(tmp_path / 'c.json'), clusters)
    npy = io.BytesIO()
    np.save(npy, np.array(clusters, dtype=object), allow_pickle=True)
    records_file = tmp_path / 'r.tfrecord'
    with tf.io.TFRecordWriter(str(records_file)) as writer:
        for raw in list(tf.compat.v1.io.tf_record_iterator(
                records.split_path(synthetic_dir, 'test')))[:6]:
            writer.write(raw)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode='w:gz') as tar:
        for i, name in enumerate(converter.TRAIN_BATCHES + (converter.TEST_BATCH,)):
            body = pickle.dumps(_batch(1 + i % 2), protocol=2)
            info = tarfile.TarInfo('cifar-10-batches-py/' + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    described = tmp_path / 'n.hdf5'
    hdf5_io.save_hdf5(str(described), random_weights(get_model('src56').trace(SRC56_TINY), 0),
                      SRC56_TINY, network=get_model('src56').network,
                      class_names=records.CLASS_NAMES)
    return {
        'hdf5': ('.hdf5', weights.read_bytes(), hdf5_io.read_hdf5),
        # a weight file's network description and class names, the model rebuilt from them
        'hdf5_network': ('.hdf5', described.read_bytes(), model_of_file),
        'network': ('.json', description.to_bytes(get_model('dc40').network),
                    lambda p: from_description(description.read_file(p), p)),
        'json': ('.json', (tmp_path / 'c.json').read_bytes(), load_clusters),
        'npy': ('.npy', npy.getvalue(), load_clusters),
        'batch': ('', pickle.dumps(_batch(3), protocol=2), _read_batch),
        'tfrecord': ('.tfrecord', records_file.read_bytes(), _read_records),
        'archive': ('.tar.gz', archive.getvalue(), _read_archive),
        'labels': ('.txt', ''.join('%d:%s\n' % c for c in enumerate(records.CLASS_NAMES)).encode(),
                   _labels_txt),
    }


def test_fuzzed_files_load_or_give_a_user_error(tmp_path, synthetic_dir):
    """Each kind: the valid file loads; MUTATIONS mutated copies (fixed seed) each load or raise
    the loader's UserError (one line), and nothing else."""
    rng = np.random.default_rng(SEED)
    failures = []
    for kind, (suffix, raw, load) in _originals(tmp_path, synthetic_dir).items():
        valid = tmp_path / ('valid_%s%s' % (kind, suffix))
        valid.write_bytes(raw)
        load(str(valid))
        for i in range(MUTATIONS):
            path = tmp_path / ('%s_%d%s' % (kind, i, suffix))  # a new name: no cached result
            path.write_bytes(_mutate(raw, rng))
            try:
                load(str(path))
            except UserError as e:
                if '\n' in str(e) or 'Traceback' in str(e):
                    failures.append((kind, i, str(e)))
            except Exception as e:  # anything else (or a crash) is the bug this test finds
                failures.append((kind, i, '%s: %s' % (type(e).__name__, str(e)[:200])))
    assert not failures, '\n'.join(map(str, failures))
