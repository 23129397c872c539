"""hdf5 files keep the originals' key names; loading reports and refuses mismatches."""

import h5py
import numpy as np
import pytest

from tf_benchmarks.files import hdf5_io
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.evaluation import Evaluator
from tf_benchmarks.models.registry import get_model


def test_round_trip_with_original_key_names(tmp_path):
    path = str(tmp_path / 'w.hdf5')
    weights = {'v0/cg/conv0/conv2d/kernel': np.random.rand(3, 3, 3, 4).astype(np.float32),
               'v0/cg/conv0/batchnorm0/gamma': np.ones(4, np.float32)}
    masks = {0: np.array([1, 0, 1, 1], np.float32), 12: np.ones(2, np.float32)}
    hdf5_io.save_hdf5(path, weights, deps=[4, 2], masks=masks)
    with h5py.File(path, 'r') as f:
        assert sorted(f.keys()) == ['base_mask_value0', 'base_mask_value12', 'deps',
                                    'v0+cg+conv0+batchnorm0+gamma:0',
                                    'v0+cg+conv0+conv2d+kernel:0']
        assert f['deps'][()].tolist() == [4, 2]
    loaded = hdf5_io.read_hdf5(path)
    assert loaded.deps == (4, 2)
    assert set(loaded.weights) == set(weights)
    for name in weights:
        np.testing.assert_array_equal(loaded.weights[name], weights[name])
    np.testing.assert_array_equal(loaded.masks[0], masks[0])
    assert [p for p in tmp_path.iterdir()] == [tmp_path / 'w.hdf5']


def test_name_normalization_matches_original_variants():
    assert hdf5_io.normalize_name('v0/cg/conv0/conv2d/kernel:0') == 'cg/conv0/conv2d/kernel'
    assert hdf5_io.normalize_name('tower_0/v1/cg/affine0/dense/bias') == 'cg/affine0/dense/bias'
    assert hdf5_io.decode_key('stage1+block0+conv1+kernel:0') == 'stage1/block0/conv1/kernel'
    assert hdf5_io.encode_key('fc10/bias') == 'fc10+bias:0'


def test_unreadable_file_is_a_user_error(tmp_path):
    bad = tmp_path / 'bad.hdf5'
    bad.write_bytes(b'garbage')
    with pytest.raises(UserError, match='cannot read'):
        hdf5_io.read_hdf5(str(bad))
    with pytest.raises(UserError, match='does not exist'):
        hdf5_io.read_hdf5(str(tmp_path / 'missing.hdf5'))


def test_load_reports_wrong_shapes_by_name(synthetic_dir):
    vc = get_model('vc')
    deps = [4] * 13
    trace = vc.trace(deps)
    weights = {n: np.zeros(v.shape, np.float32) for n, v in trace.variables.items()}
    weights['v0/cg/conv3/conv2d/kernel'] = np.zeros((3, 3, 4, 5), np.float32)
    weights['v0/cg/unknown/thing'] = np.zeros(3, np.float32)
    with Evaluator(vc, deps, synthetic_dir, batch_size=50) as evaluator:
        with pytest.raises(UserError, match=r'v0/cg/conv3/conv2d/kernel: graph \(3, 3, 4, 4\), '
                                            r'file \(3, 3, 4, 5\)'):
            evaluator.load(weights, 'x.hdf5')
        del weights['v0/cg/conv3/conv2d/kernel']
        with pytest.raises(UserError, match='lacks 1 of the model.s variables'):
            evaluator.load(weights, 'x.hdf5')
        weights['v0/cg/conv3/conv2d/kernel'] = np.zeros((3, 3, 4, 4), np.float32)
        report = evaluator.load(weights, 'x.hdf5')
    assert report.unexpected == ['v0/cg/unknown/thing']
    assert len(report.matched) == len(trace.variables)
