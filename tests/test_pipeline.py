"""Input pipeline shapes and value range, augmentation semantics, exact evaluation passes."""

import numpy as np
import pytest

from tf_benchmarks.data import input_pipeline, records
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.evaluation import Evaluator
from tf_benchmarks.models.registry import get_model
import tensorflow.compat.v1 as tf


def _stream(path, batch_size, steps=1, start=0, **kwargs):
    """`steps` batches of the training stream of `path`, starting at stream position `start`."""
    images, labels = input_pipeline.load_split(path)
    with tf.Graph().as_default():
        ds = input_pipeline.position_dataset(images, labels, start, batch_size, **kwargs)
        batch = tf.data.make_one_shot_iterator(ds).get_next()
        with tf.Session() as sess:
            return [sess.run(batch) for _ in range(steps)]


def test_train_batches_shape_range_and_order(synthetic_dir):
    path = records.split_path(synthetic_dir, 'train')
    raw, raw_labels, _ = records.read_records(path)
    (images, labels), = _stream(path, 32, augmentation=False, shuffle=False)
    assert images.shape == (32, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images, raw[:32] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(labels, raw_labels[:32])

    (images, labels), = _stream(path, 64, seed=1)
    assert images.shape == (64, 32, 32, 3)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert labels.min() >= 0 and labels.max() <= 9


def test_every_epoch_is_a_new_permutation_of_the_split(synthetic_dir):
    path = records.split_path(synthetic_dir, 'train')
    raw, _, _ = records.read_records(path)
    batches = _stream(path, 64, steps=20, augmentation=False, seed=5)   # 640 images: 2 epochs
    pixels = np.round((np.concatenate([b[0] for b in batches]) + 1) * 127.5).astype(np.uint8)
    index = {raw[i].tobytes(): i for i in range(len(raw))}
    order = [index[p.tobytes()] for p in pixels]
    assert sorted(order[:640]) == sorted(order[640:]) == list(range(640))
    assert order[:640] != order[640:] and order[:640] != list(range(640))


def test_a_stream_started_later_continues_exactly(synthetic_dir):
    """Position p of a stream started at 0 equals position p of a stream started at p (across an
    epoch boundary, augmentation included): what makes a resumed run exact."""
    path = records.split_path(synthetic_dir, 'train')
    whole = _stream(path, 64, steps=14, seed=7)
    later = _stream(path, 64, steps=4, start=10 * 64, seed=7)
    for (a, la), (b, lb) in zip(whole[10:], later):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(whole[0][0], _stream(path, 64, seed=8)[0][0])


def test_augmentation_is_a_zero_padded_crop_maybe_flipped(synthetic_dir):
    path = records.split_path(synthetic_dir, 'train')
    raw, _, _ = records.read_records(path)
    (images, _), = _stream(path, 16, shuffle=False, seed=3)
    pixels = np.round((images + 1.0) * 127.5).astype(np.int64)
    moved = 0
    for i in range(16):
        padded = np.pad(raw[i].astype(np.int64), ((4, 4), (4, 4), (0, 0)))
        candidates = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                      if np.array_equal(pixels[i], (lambda c: c[:, ::-1] if f else c)(
                          padded[dy:dy + 32, dx:dx + 32]))]
        assert candidates, 'image %d is not a crop of the padded original' % i
        moved += (4, 4, 0) not in candidates
    assert moved > 8  # crops and flips really happen


def test_eval_is_one_exact_pass_at_any_batch_size(synthetic_dir):
    model, deps = get_model('vc'), [4] * 13
    trace = model.trace(deps)
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(0, 0.5, v.shape).astype(np.float32) for n, v in trace.variables.items()}
    for n, v in trace.variables.items():
        if n.endswith('moving_variance'):
            weights[n] = np.abs(weights[n]) + 0.5
    results = []
    for batch in (7, 200, 1000):
        with Evaluator(model, deps, synthetic_dir, batch_size=batch) as evaluator:
            results.append(evaluator.evaluate(weights))
    assert [r.num_examples for r in results] == [200, 200, 200]
    assert len({(round(r.top1 * 200), round(r.top5 * 200)) for r in results}) == 1
    assert results[0].loss == pytest.approx(results[1].loss, rel=1e-5)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match='(?s)no CIFAR-10 train records .*download_and_convert_cifar10'):
        records.split_path(str(tmp_path), 'train')


def test_original_file_names_are_accepted(tmp_path, synthetic_dir):
    import shutil
    shutil.copy(records.split_path(synthetic_dir, 'test'), tmp_path / 'validation.tfrecords')
    assert records.split_path(str(tmp_path), 'test').endswith('validation.tfrecords')


def test_corrupt_record_is_a_clear_error(tmp_path, synthetic_dir):
    data = open(records.split_path(synthetic_dir, 'test'), 'rb').read()
    (tmp_path / 'cifar10_test.tfrecord').write_bytes(data[:5000] + b'\x00' * 64 + data[5064:])
    with pytest.raises(UserError, match='corrupt'):
        with Evaluator(get_model('vc'), [4] * 13, str(tmp_path), batch_size=50) as evaluator:
            trace = get_model('vc').trace([4] * 13)
            evaluator.evaluate({n: np.ones(v.shape, np.float32) for n, v in trace.variables.items()})
