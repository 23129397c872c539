"""Download CIFAR-10 and convert it to the slim tfrecord format (a working replacement for
tensorflow/models' research/slim/datasets/download_and_convert_cifar10.py).

Input: the official archive downloaded from Toronto (default; progress and MD5 check), a local
`--archive cifar-10-python.tar.gz`, an extracted `--batches_dir cifar-10-batches-py/`, or a synthetic
set generated offline (`--synthetic N`). The batches are pickles, read with a restricted unpickler
(tf_benchmarks/files/safe_pickle.py) that rebuilds plain data only and never runs code from them; all are
read before anything is written. Output in `--dataset_dir`: `cifar10_train.tfrecord` (data_batch_1..5
in order), `cifar10_test.tfrecord` and `labels.txt`, written to temporary names and renamed once
complete; existing output is only replaced with `--overwrite`.

    python datasets/download_and_convert_cifar10.py --dataset_dir data/cifar10
    python datasets/download_and_convert_cifar10.py --dataset_dir data/cifar10 --batches_dir DIR
    python datasets/download_and_convert_cifar10.py --dataset_dir data/synth --synthetic 6000
"""

import hashlib
import io
import os
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tf_benchmarks.core.errors import (MALFORMED_INPUT_ERRORS, UserError,  # noqa: E402
                                       exit_on_user_error)
from tf_benchmarks.files.safe_pickle import RefusedGlobal, safe_load  # noqa: E402
from tf_benchmarks.core.tf_startup import import_tensorflow  # noqa: E402

DATA_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
DATA_MD5 = 'c58f30108f718f92721af3b95e74349a'
TRAIN_BATCHES = tuple('data_batch_%d' % i for i in range(1, 6))
TEST_BATCH = 'test_batch'
TRAIN_FILE, TEST_FILE = 'cifar10_train.tfrecord', 'cifar10_test.tfrecord'

FLAGS = flags.FLAGS
flags.DEFINE_string('dataset_dir', None, 'Directory to write the tfrecords and labels.txt to.')
flags.DEFINE_string('archive', None, 'Local cifar-10-python.tar.gz to convert instead of downloading.')
flags.DEFINE_string('batches_dir', None, 'Extracted cifar-10-batches-py/ directory to convert.')
flags.DEFINE_integer('synthetic', None, 'Write a synthetic CIFAR-shaped set with this many training '
                     'images (and --synthetic_test test images) instead of CIFAR-10.')
flags.DEFINE_integer('synthetic_test', None, 'Test images of the synthetic set (default N/5).')
flags.DEFINE_integer('seed', 0, 'Seed of the synthetic set.')
flags.DEFINE_string('url', DATA_URL, 'Where to download the official archive from.')
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')


# -- reading the official pickles --------------------------------------------------------------------
def load_batch(fileobj, name):
    """One pickled batch -> (uint8 images [N,32,32,3] HWC RGB, int64 labels [N]).

    Read with the restricted unpickler: a pickle that asks for anything but plain data is refused
    before any of it runs. Pixels must be integers in 0..255, labels integers in 0..9.
    """
    try:
        batch = safe_load(fileobj, encoding='bytes')
        data = _integers(batch[b'data'], name, 'data')
        labels = _integers(batch[b'labels'], name, 'labels').astype(np.int64)
    except RefusedGlobal as e:
        raise UserError('%s is not a plain CIFAR-10 batch: it asks to load %s, which a CIFAR-10 '
                        'batch never contains; refusing to read it (nothing of it was run)'
                        % (name, e.name))
    except MALFORMED_INPUT_ERRORS as e:
        raise UserError('%s is not a CIFAR-10 python batch (%s: %s); the download or archive is '
                        'corrupt, fetch it again' % (name, type(e).__name__, _first_line(e)))
    if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(labels) != len(data):
        raise UserError('%s has data of shape %s and labels of shape %s; expected N x 3072 and N '
                        'labels' % (name, data.shape, labels.shape))
    if data.size and (data.min() < 0 or data.max() > 255):
        raise UserError('%s has pixel values outside 0..255 (%d..%d); the batch is corrupt, fetch '
                        'it again' % (name, data.min(), data.max()))
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError('%s has labels outside 0..9' % name)
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _integers(value, name, what):
    """`value` as an integer array; floats (which would be truncated), text and objects are
    refused."""
    array = np.asarray(value)
    if array.dtype.kind not in 'iu':
        raise UserError('%s has %s of type %s; a CIFAR-10 batch holds integers there'
                        % (name, what, array.dtype))
    return array


def _first_line(error):
    text = str(error).splitlines()[0] if str(error) else ''
    return text[:200]


def _concat(batches):
    return (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def read_batches_dir(directory):
    """(train, test) from an extracted cifar-10-batches-py/ directory."""
    def read(name):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise UserError('%s is %s %s; --batches_dir must be an extracted '
                            'cifar-10-batches-py/ folder'
                            % (name, 'a directory, not a batch file, in' if os.path.isdir(path)
                               else 'missing from', directory))
        with open(path, 'rb') as f:
            return load_batch(f, path)
    return _concat([read(n) for n in TRAIN_BATCHES]), read(TEST_BATCH)


def read_archive(path):
    """(train, test) from cifar-10-python.tar.gz, read in place without extracting to disk."""
    if not os.path.exists(path):
        raise UserError('archive %s does not exist' % path)
    found = {}
    try:
        with tarfile.open(path, 'r:gz') as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if member.isfile() and base in TRAIN_BATCHES + (TEST_BATCH,):
                    found[base] = load_batch(io.BytesIO(tar.extractfile(member).read()),
                                             '%s:%s' % (path, member.name))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise UserError('%s is not a readable cifar-10-python.tar.gz (%s); download it again'
                        % (path, e))
    missing = [n for n in TRAIN_BATCHES + (TEST_BATCH,) if n not in found]
    if missing:
        raise UserError('%s lacks %s; is it the CIFAR-10 python version?' % (path, ', '.join(missing)))
    return _concat([found[n] for n in TRAIN_BATCHES]), found[TEST_BATCH]


def download(url, directory, expected_md5=DATA_MD5):
    """Download `url` into `directory` with a progress line and an MD5 check; returns the path."""
    dest = os.path.join(directory, os.path.basename(url))
    tmp = dest + '.part'
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, 'wb') as out:
            total = int(response.headers.get('Content-Length') or 0)
            done, start = 0, time.time()
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                rate = done / max(time.time() - start, 1e-6) / 1e6
                pct = ' %5.1f%%' % (100.0 * done / total) if total else ''
                sys.stdout.write('\r>> Downloading %s%s (%.1f MB, %.1f MB/s)'
                                 % (os.path.basename(url), pct, done / 1e6, rate))
                sys.stdout.flush()
        sys.stdout.write('\n')
    except (urllib.error.URLError, OSError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UserError('could not download %s (%s). Without internet access, pass --archive '
                        'cifar-10-python.tar.gz or --batches_dir cifar-10-batches-py/, or use '
                        '--synthetic N' % (url, e))
    if expected_md5 and md5.hexdigest() != expected_md5:
        os.remove(tmp)
        raise UserError('download of %s has MD5 %s, expected %s; the file is corrupt, try again'
                        % (url, md5.hexdigest(), expected_md5))
    os.replace(tmp, dest)
    return dest


# -- writing ---------------------------------------------------------------------------------------
def encode_pngs(images, batch_size=1000):
    """PNG-encode uint8 HWC images with TensorFlow's encoder (the bytes slim's converter writes).

    Runs in an explicit graph and session, so it works whether or not eager mode is on.
    """
    import tensorflow as tf
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        pixels = v1.placeholder(tf.uint8, [None, 32, 32, 3])
        ds = tf.data.Dataset.from_tensor_slices(pixels).map(
            tf.io.encode_png, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        iterator = v1.data.make_initializable_iterator(ds)
        next_batch = iterator.get_next()
        pngs = []
        with v1.Session() as sess:
            sess.run(iterator.initializer, {pixels: images})
            while True:
                try:
                    pngs.extend(sess.run(next_batch))
                except tf.errors.OutOfRangeError:
                    return pngs


def write_records(path, images, labels):
    import tensorflow as tf
    from tf_benchmarks.data.records import image_to_tfexample
    with tf.io.TFRecordWriter(path) as writer:
        for png, label in zip(encode_pngs(images), labels):
            writer.write(image_to_tfexample(png, label).SerializeToString())


def write_dataset(dataset_dir, train, test, overwrite=False, class_names=None):
    """Write train/test records and labels.txt to temporary names, then rename all three."""
    from tf_benchmarks.data.records import CLASS_NAMES, LABELS_FILE
    outputs = [TRAIN_FILE, TEST_FILE, LABELS_FILE]
    existing = [n for n in outputs if os.path.exists(os.path.join(dataset_dir, n))]
    if existing and not overwrite:
        raise UserError('%s already holds %s; pass --overwrite to replace them'
                        % (dataset_dir, ', '.join(existing)))
    os.makedirs(dataset_dir, exist_ok=True)
    tmp = {n: os.path.join(dataset_dir, '.%s.tmp-%d' % (n, os.getpid())) for n in outputs}
    try:
        for name, (images, labels) in ((TRAIN_FILE, train), (TEST_FILE, test)):
            print('>> Writing %d images to %s' % (len(images), os.path.join(dataset_dir, name)))
            write_records(tmp[name], images, labels)
        with open(tmp[LABELS_FILE], 'w') as f:
            for i, cls in enumerate(class_names or CLASS_NAMES):
                f.write('%d:%s\n' % (i, cls))
        for name in outputs:
            os.replace(tmp[name], os.path.join(dataset_dir, name))
    finally:
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)


def synthetic_splits(num_train, num_test, seed):
    from datasets.synthetic_cifar10 import generate
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    return generate(num_train, train_seed), generate(num_test, test_seed)


def _check_output_dir(dataset_dir):
    """--dataset_dir must be a directory (or not exist yet), and its output names no directories."""
    from tf_benchmarks.data.records import LABELS_FILE
    if os.path.exists(dataset_dir) and not os.path.isdir(dataset_dir):
        raise UserError('--dataset_dir %s is a file, not a directory; pass the folder to write the '
                        'records to' % dataset_dir)
    for name in (TRAIN_FILE, TEST_FILE, LABELS_FILE):
        if os.path.isdir(os.path.join(dataset_dir, name)):
            raise UserError('%s is a directory; remove it or pass another --dataset_dir'
                            % os.path.join(dataset_dir, name))


def run(dataset_dir, archive=None, batches_dir=None, synthetic=None, synthetic_test=None, seed=0,
        url=DATA_URL, overwrite=False):
    sources = [s for s in (archive, batches_dir, synthetic) if s is not None]
    if len(sources) > 1:
        raise UserError('pass at most one of --archive, --batches_dir and --synthetic')
    import_tensorflow()  # without the CPU-only start-up notices
    _check_output_dir(dataset_dir)
    if synthetic is not None:
        if synthetic < 10:
            raise UserError('--synthetic needs at least 10 training images, got %d' % synthetic)
        if synthetic_test is not None and synthetic_test < 1:
            raise UserError('--synthetic_test needs at least 1 test image, got %d'
                            % synthetic_test)
        if seed < 0:
            raise UserError('--seed must not be negative, got %d' % seed)
        num_test = synthetic_test if synthetic_test is not None else max(synthetic // 5, 10)
        train, test = synthetic_splits(synthetic, num_test, seed)
        names = ['synthetic_%d' % i for i in range(10)]
        write_dataset(dataset_dir, train, test, overwrite, names)
    elif batches_dir is not None:
        write_dataset(dataset_dir, *read_batches_dir(batches_dir), overwrite=overwrite)
    elif archive is not None:
        write_dataset(dataset_dir, *read_archive(archive), overwrite=overwrite)
    else:
        from tf_benchmarks.data.records import LABELS_FILE
        if not overwrite and any(os.path.exists(os.path.join(dataset_dir, n))
                                 for n in (TRAIN_FILE, TEST_FILE, LABELS_FILE)):
            raise UserError('%s already holds converted files; pass --overwrite to replace them'
                            % dataset_dir)
        os.makedirs(dataset_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dataset_dir) as tmp:
            path = download(url, tmp)
            write_dataset(dataset_dir, *read_archive(path), overwrite=overwrite)
    print('>> Finished converting the dataset to %s' % os.path.abspath(dataset_dir))


def main(argv):
    if len(argv) > 1:
        raise UserError('unexpected arguments %s' % ' '.join(argv[1:]))
    if not FLAGS.dataset_dir:
        raise UserError('--dataset_dir is required')
    run(FLAGS.dataset_dir, FLAGS.archive, FLAGS.batches_dir, FLAGS.synthetic, FLAGS.synthetic_test,
        FLAGS.seed, FLAGS.url, FLAGS.overwrite)


if __name__ == '__main__':
    app.run(exit_on_user_error(main))
