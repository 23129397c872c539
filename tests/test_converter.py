"""datasets/download_and_convert_cifar10.py: exact slim format, round trip, errors, atomic output."""

import io
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from datasets import download_and_convert_cifar10 as converter
from datasets import synthetic_cifar10
from tf_benchmarks.data import records
from tf_benchmarks.core.errors import UserError

from conftest import REPO

FEATURES = {'image/encoded', 'image/format', 'image/class/label', 'image/height', 'image/width'}


def _pickled_pixels(batches_dir, names):
    images, labels = [], []
    for name in names:
        with open(os.path.join(batches_dir, name), 'rb') as f:
            batch = pickle.load(f, encoding='bytes')
        images.append(np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b'labels']))
    return np.concatenate(images), np.concatenate(labels)


def test_subset_round_trip(subset_dir, subset_batches):
    for split, names, count in (('train', converter.TRAIN_BATCHES, 5085),
                                ('test', (converter.TEST_BATCH,), 1017)):
        path = os.path.join(subset_dir, 'cifar10_%s.tfrecord' % split)
        images, labels, examples = records.read_records(path)
        assert len(examples) == count == records.count_records(path)
        expected_images, expected_labels = _pickled_pixels(subset_batches, names)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
        for example in examples[:50]:
            feature = example.features.feature
            assert set(feature) == FEATURES
            assert feature['image/format'].bytes_list.value == [b'png']
            assert feature['image/height'].int64_list.value == [32]
            assert feature['image/width'].int64_list.value == [32]
            assert feature['image/encoded'].bytes_list.value[0].startswith(b'\x89PNG\r\n\x1a\n')
    with open(os.path.join(subset_dir, 'labels.txt')) as f:
        assert f.read().splitlines() == ['%d:%s' % x for x in enumerate(records.CLASS_NAMES)]


def test_record_bytes_are_the_slim_example(tmp_path):
    """The serialized record is exactly slim's image_to_tfexample of TF's PNG encoding."""
    import tensorflow as tf
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    converter.write_records(str(tmp_path / 'one.tfrecord'), image[None], [7])
    raw = list(tf.compat.v1.io.tf_record_iterator(str(tmp_path / 'one.tfrecord')))
    assert len(raw) == 1
    png = converter.encode_pngs(image[None])[0]
    expected = tf.train.Example(features=tf.train.Features(feature={
        'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        'image/format': tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'png'])),
        'image/class/label': tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        'image/height': tf.train.Feature(int64_list=tf.train.Int64List(value=[32])),
        'image/width': tf.train.Feature(int64_list=tf.train.Int64List(value=[32])),
    }))
    assert raw[0] == expected.SerializeToString()


def _fake_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b'batch_label': b'x', b'labels': list(rng.integers(0, 10, n)),
            b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8), b'filenames': [b'f'] * n}


def test_archive_input_and_order(tmp_path):
    """--archive reads the tarball in place; train = data_batch_1..5 in order."""
    archive = tmp_path / 'cifar-10-python.tar.gz'
    batches = {name: _fake_batch(3, i) for i, name in
               enumerate(converter.TRAIN_BATCHES + (converter.TEST_BATCH,))}
    with tarfile.open(archive, 'w:gz') as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch)
            info = tarfile.TarInfo('cifar-10-batches-py/' + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / 'out'
    converter.run(str(out), archive=str(archive))
    images, labels, _ = records.read_records(str(out / 'cifar10_train.tfrecord'))
    expected = np.concatenate([batches[n][b'data'] for n in converter.TRAIN_BATCHES])
    np.testing.assert_array_equal(images.transpose(0, 3, 1, 2).reshape(-1, 3072), expected)
    assert list(labels) == sum((list(batches[n][b'labels']) for n in converter.TRAIN_BATCHES), [])


def test_refuses_to_overwrite_and_corrupt_inputs(tmp_path):
    out = tmp_path / 'synth'
    converter.run(str(out), synthetic=20, synthetic_test=10)
    before = (out / 'cifar10_train.tfrecord').read_bytes()
    with pytest.raises(UserError, match='--overwrite'):
        converter.run(str(out), synthetic=30, synthetic_test=10)
    assert (out / 'cifar10_train.tfrecord').read_bytes() == before
    converter.run(str(out), synthetic=30, synthetic_test=10, overwrite=True)
    assert records.count_records(str(out / 'cifar10_train.tfrecord')) == 30

    bad = tmp_path / 'bad.tar.gz'
    bad.write_bytes(b'not a tarball at all')
    with pytest.raises(UserError, match='not a readable'):
        converter.run(str(tmp_path / 'o1'), archive=str(bad))
    batches = tmp_path / 'batches'
    batches.mkdir()
    for name in converter.TRAIN_BATCHES + (converter.TEST_BATCH,):
        (batches / name).write_bytes(pickle.dumps(_fake_batch(2, 0))[:40])
    with pytest.raises(UserError, match='not a CIFAR-10 python batch'):
        converter.run(str(tmp_path / 'o2'), batches_dir=str(batches))
    assert not (tmp_path / 'o2').exists() or os.listdir(tmp_path / 'o2') == []


def test_cli_error_is_one_line_and_nonzero(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, 'datasets',
                                                          'download_and_convert_cifar10.py'),
                             '--dataset_dir', str(tmp_path), '--batches_dir', str(tmp_path / 'no')],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith('error: data_batch_1 is missing')


def test_download_failure_is_clear(tmp_path):
    with pytest.raises(UserError, match='could not download .*--archive'):
        converter.download('http://127.0.0.1:9/cifar-10-python.tar.gz', str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_synthetic_is_deterministic_and_balanced():
    a, la = synthetic_cifar10.generate(200, 3)
    b, lb = synthetic_cifar10.generate(200, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.bincount(la, minlength=10).tolist() == [20] * 10
    c, _ = synthetic_cifar10.generate(200, 4)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (200, 32, 32, 3)
