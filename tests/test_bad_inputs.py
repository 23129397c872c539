"""Every bad input a user can give ends with one clear error line, exit status 2, no partial file
and every earlier file unchanged: data, weights and clusters files, flags, settings that differ
from the recorded run, a read-only or full output directory, and a NaN loss."""

import os
import resource
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import error_lines, file_tree, random_weights, run_driver_cases
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
VC_TINY = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]
DC_TINY = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
VC_FLAGS = ['--preset', 'smoke', '--deps', ','.join(map(str, VC_TINY))]
DC_FLAGS = ['--preset', 'smoke', '--deps', ','.join(map(str, DC_TINY))]


_tree = file_tree


@pytest.fixture(scope='module')
def inputs(tmp_path_factory, synthetic_dir):
    """Broken data directories and weights / clusters files, made without training."""
    d = tmp_path_factory.mktemp('inputs')
    train = open(os.path.join(synthetic_dir, 'cifar10_train.tfrecord'), 'rb').read()
    test = os.path.join(synthetic_dir, 'cifar10_test.tfrecord')
    for name, data in (('empty_records', b''), ('truncated', train[:len(train) // 2]),
                       ('corrupt', train[:5000] + bytes(64) + train[5064:])):
        os.makedirs(d / name)
        (d / name / 'cifar10_train.tfrecord').write_bytes(data)
        shutil.copy(test, d / name)
    os.makedirs(d / 'empty_dir')
    vc, dc40 = get_model('vc'), get_model('dc40')
    hdf5_io.save_hdf5(str(d / 'vc.hdf5'), random_weights(vc.trace(VC_TINY), 0), VC_TINY)
    wide = [8] * 13
    hdf5_io.save_hdf5(str(d / 'vc_wrong_widths.hdf5'), random_weights(vc.trace(wide), 0), VC_TINY)
    hdf5_io.save_hdf5(str(d / 'dc40.hdf5'), random_weights(dc40.trace(DC_TINY), 0), DC_TINY)
    nan = random_weights(vc.trace(VC_TINY), 0)
    nan['v0/cg/affine1/dense/bias'] *= 0
    nan['v0/cg/affine1/dense/bias'][::2] = 3e38  # finite, but the loss overflows
    hdf5_io.save_hdf5(str(d / 'vc_nan.hdf5'), nan, VC_TINY)
    raw = open(d / 'vc.hdf5', 'rb').read()
    (d / 'vc_truncated.hdf5').write_bytes(raw[:len(raw) // 2])
    (d / 'notes.hdf5').write_text('not weights\n')
    from csgd.clusters_file import save_clusters
    save_clusters(str(d / 'clusters_other_model.json'), {l: [[0], [1]] for l in range(39)})
    return d


def _run_cases(script, cases, tmp_path, inputs):
    """Run (args, expected message) cases in fresh directories holding an earlier output; each
    must exit 2 with one `error:` line naming the problem and leave the directory as it was."""
    work = []
    for i, (args, _) in enumerate(cases):
        cwd = tmp_path / ('case%d' % i)
        os.makedirs(cwd)
        for name in ('vc.hdf5', 'dc40.hdf5'):
            shutil.copy(inputs / name, cwd)
        (cwd / 'earlier_log.txt').write_text('an earlier run\n')
        work.append([str(cwd), [a.replace('INPUTS', str(inputs)) for a in args]])
    before = [_tree(cwd) for cwd, _ in work]
    outcomes = run_driver_cases(script, work)
    for (args, expected), outcome, (cwd, _), tree in zip(cases, outcomes, work, before):
        assert outcome['code'] == 2, (args, outcome)
        assert len(error_lines(outcome['stderr'])) == 1 and expected in outcome['stderr'], \
            (args, outcome['stderr'])
        assert 'Traceback' not in outcome['stderr']
        assert _tree(cwd) == tree, args


def test_aofp_bad_inputs(tmp_path, inputs, synthetic_dir):
    data = ['--data_dir', synthetic_dir]
    _run_cases(AOFP, [
        (['train', '--data_dir', 'INPUTS/missing'] + VC_FLAGS, 'no CIFAR-10 train records'),
        (['train', '--data_dir', 'INPUTS/empty_dir'] + VC_FLAGS, 'no CIFAR-10 train records'),
        (['train', '--data_dir', 'INPUTS/empty_records'] + VC_FLAGS, 'holds no images'),
        (['train', '--data_dir', 'INPUTS/truncated'] + VC_FLAGS, 'is corrupt (truncated record'),
        (['train', '--data_dir', 'INPUTS/corrupt'] + VC_FLAGS, 'is corrupt (corrupted record'),
        (['eval', 'INPUTS/vc_truncated.hdf5'] + data, 'cannot read'),
        (['eval', 'INPUTS/notes.hdf5'] + data, 'cannot read'),
        (['eval', 'dc40.hdf5', '--model', 'vc'] + data, 'belongs to another architecture'),
        (['prune', '--base_weights', 'INPUTS/vc_wrong_widths.hdf5'] + data,
         'tensors have the wrong shape'),
        (['prune', '--base_weights', 'vc.hdf5', '--itr_schedule', '1.5'] + data,
         'fractions of FLOPs removed, in (0, 1)'),
        (['train', '--max_epochs', '-1'] + VC_FLAGS + data, '--max_epochs must be positive'),
        (['train', '--batch_size', '0'] + VC_FLAGS + data, '--batch_size must be at least 1'),
        (['train', '--deps', '0,4,8,8,8,8,8,8,8,8,8,8,8'] + data, 'at least one filter'),
        (['train', '--deps', '4,4'] + data, 'needs 13 widths'),
        (['prune', '--base_weights', 'vc.hdf5', '--batches_per_half', '0'] + data,
         '--batches_per_half must be positive'),
        (['prune', '--base_weights', 'vc.hdf5', '--finetune_epochs', '0'] + data,
         '--finetune_epochs must be positive'),
        (['prune', '--base_weights', 'vc.hdf5', '--restart_from', 'itr7.fly'] + data,
         'no such stage; the stages of this command are itr0.search'),
    ], tmp_path, inputs)


def test_csgd_bad_inputs(tmp_path, inputs, synthetic_dir):
    data = ['--data_dir', synthetic_dir, '--init_hdf5', 'dc40.hdf5']
    _run_cases(CSGD, [
        (['csgd1', '--target_deps', '0-3-3'] + data, 'three positive widths like 3-3-3'),
        (['csgd1', '--target_deps', '9-1-1'] + data, 'wider than the model'),
        (['magnitude1', '--target_deps', '1-1'] + data, 'three positive widths'),
        (['csgd1', '--target_deps', '1-1-1', '--clusters_file',
          'INPUTS/clusters_other_model.json'] + data, 'does not match this model and target'),
        (['csgd1', '--target_deps', '1-1-1', '--clusters_file', 'INPUTS/nothing.json'] + data,
         '--clusters_file INPUTS/nothing.json does not exist'.replace('INPUTS', str(inputs))),
        (['magnitude1', '--data_dir', synthetic_dir, '--init_hdf5', 'vc.hdf5'],
         'belongs to another architecture'),
        (['csgd1', '--centri_strength', '-1'] + data, 'must not be negative'),
        (['train', '--max_epochs', '0'] + DC_FLAGS + data, '--max_epochs must be positive'),
    ], tmp_path, inputs)


def test_nan_loss_names_the_step_and_writes_no_result(tmp_path, inputs, synthetic_dir):
    shutil.copy(inputs / 'vc_nan.hdf5', tmp_path / 'vc_scratch_savedweights.hdf5')
    result = subprocess.run([sys.executable, AOFP, 'prune', '--data_dir', synthetic_dir,
                             '--preset', 'smoke'], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert 'error: the loss became inf at step 1' in result.stderr
    assert 'no checkpoint was written yet' in result.stderr
    assert not os.path.exists(tmp_path / 'bds_exps' / 'vc_reproduce_itr0_tunedweights.hdf5')


def _can_mount_read_only():
    return shutil.which('unshare') and subprocess.run(
        ['unshare', '-m', 'true'], capture_output=True).returncode == 0


@pytest.mark.parametrize('how', ['read-only', 'full'])
def test_unwritable_output_directory(tmp_path, synthetic_dir, how):
    """A read-only directory (a read-only mount in a private mount namespace) and a full disk
    (a file size limit: writes fail with EFBIG like ENOSPC) end with one clear line, exit 2."""
    work = tmp_path / 'work'
    os.makedirs(work)
    (work / 'earlier_log.txt').write_text('an earlier run\n')
    before = _tree(work)
    cmd = [sys.executable, AOFP, 'train', '--data_dir', synthetic_dir, '--max_epochs', '0.2'] + \
        VC_FLAGS
    if how == 'read-only':
        if not _can_mount_read_only():
            pytest.skip('no mount namespaces here (unshare -m fails)')
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift && ' \
                 'exec "$@"'
        result = subprocess.run(['unshare', '-m', 'sh', '-c', script, 'sh', str(work)] + cmd,
                                capture_output=True, text=True)
        expected = 'Read-only file system'
    else:
        limit = 20000  # run.json fits, a checkpoint of the tiny vc does not

        def small_files():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        result = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                preexec_fn=small_files)
        expected = 'cannot write vc_scratch_train/ckpt-2 (File too large)'
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(error_lines(result.stderr)) == 1 and expected in result.stderr, result.stderr
    assert 'run in a writable directory with free space' in result.stderr
    tree = _tree(work)
    assert {k: v for k, v in tree.items() if k in before} == before
    assert not [k for k in tree if 'tmp' in k or k.endswith('.hdf5')], tree
