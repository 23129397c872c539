"""Non-finite and out-of-range inputs are refused before anything is written: every numeric flag
(NaN, Inf, out of range, a run of 0 or too many steps), negative or malformed list entries, weight
files and masks with NaN, Inf or no filter left, TF_CONFIG addresses; and training that turns
non-finite behind a max-pool (the loss still finite) stops at that step with one error."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import REPO
from helpers import error_lines, file_tree, random_weights, run_driver_cases
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.replicas import cluster_from_tf_config
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
VC_TINY = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]
DC_TINY = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
VC = ['--preset', 'smoke', '--deps', ','.join(map(str, VC_TINY)), '--max_epochs', '0.2']
PRUNE = ['prune', '--base_weights', 'vc.hdf5', '--preset', 'smoke', '--itr_schedule', '0.3',
         '--search_max_epochs', '0.2', '--finetune_epochs', '0.1']
CONV12 = 'v0/cg/conv12/conv2d/kernel'  # the last conv: BN, ReLU, then a max-pool
CONV1 = 'v0/cg/conv1/conv2d/kernel'    # before the first max-pool


_tree = file_tree


def _save(path, weights, masks=None, **changes):
    """Save `weights` with the first element of each named entry set to a value."""
    weights = {n: v.copy() for n, v in weights.items()}
    for name, value in changes.items():
        weights[name.replace('__', '/')].flat[0] = value
    hdf5_io.save_hdf5(str(path), weights, VC_TINY, masks)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """vc weights: healthy, with NaN / Inf in a conv kernel before a max-pool, with a value so
    large that training overflows behind a max-pool; tuned files with broken masks."""
    d = tmp_path_factory.mktemp('finite')
    w = random_weights(get_model('vc').trace(VC_TINY), 0)
    _save(d / 'vc.hdf5', w)
    _save(d / 'nan_conv.hdf5', w, **{CONV12.replace('/', '__'): np.nan})
    _save(d / 'inf_conv.hdf5', w, **{CONV12.replace('/', '__'): -np.inf})
    _save(d / 'huge_conv.hdf5', w, **{CONV1.replace('/', '__'): 3e38})
    _save(d / 'zero_mask.hdf5', w, {0: np.zeros(4)})
    _save(d / 'nan_mask.hdf5', w, {0: np.array([1, np.nan, 1, 1])})
    dc40 = random_weights(get_model('dc40').trace(DC_TINY), 0)
    hdf5_io.save_hdf5(str(d / 'dc40.hdf5'), dc40, DC_TINY)
    return d


def _refused(script, cases, tmp_path, files, extra=()):
    """Each (args, expected) case, in a fresh directory holding the input files, must exit 2 with
    one `error:` line containing `expected`, no traceback, and leave the directory as it was.
    `extra` (cwd, args) cases run in the same process; their outcomes are returned."""
    work = []
    for i, (args, _) in enumerate(cases):
        cwd = tmp_path / ('case%d' % i)
        shutil.copytree(files, cwd)
        work.append((cwd, args))
    before = [_tree(cwd) for cwd, _ in work]
    outcomes = run_driver_cases(script, work + list(extra))
    for (args, expected), outcome, (cwd, _), tree in zip(cases, outcomes, work, before):
        assert outcome['code'] == 2, (args, outcome['stderr'][-2000:])
        errors = error_lines(outcome['stderr'])
        assert len(errors) == 1 and expected in errors[0], (args, errors)
        assert 'Traceback' not in outcome['stderr'], args
        assert _tree(cwd) == tree, args
    return outcomes[len(cases):]


def _check_diverged(outcome, work):
    """A finite but huge kernel before a max-pool: the activations overflow and the max-pool
    turns their NaN into -3.4e38, so the loss stays finite; the gradients do not, and the run
    stops at step 1 with no tuned file."""
    assert outcome['code'] == 2, outcome['stderr'][-2000:]
    errors = error_lines(outcome['stderr'])
    assert len(errors) == 1 and errors[0].startswith(
        'error: the gradients became non-finite (NaN or Inf; the loss, '), errors
    assert 'did not show it) at step 1 (learning rate 0.001): training diverged' in errors[0]
    assert 'no checkpoint was written yet' in errors[0]
    assert not os.path.exists(work / 'bds_exps' / 'vc_reproduce_itr0_tunedweights.hdf5')


def test_aofp_refuses_non_finite_and_out_of_range_inputs(tmp_path, files, synthetic_dir,
                                                         monkeypatch):
    """The AOFP driver's flags, lists, files and TF_CONFIG; and a run that diverges behind a
    max-pool (one process for all)."""
    monkeypatch.setenv('TF_CONFIG', json.dumps({'cluster': {'worker': ['localhost:99999']},
                                                'task': {'type': 'worker', 'index': 0}}))
    data = ['--data_dir', synthetic_dir]
    train = ['train'] + data + VC
    prune = PRUNE + data
    diverging = tmp_path / 'diverging'
    shutil.copytree(files, diverging)
    diverged, = _refused(AOFP, [
        (train + ['--max_epochs', 'nan'], '--max_epochs must be positive (a finite number), '
         'got nan'),
        (train + ['--max_epochs', 'inf'], '--max_epochs must be positive'),
        (train + ['--max_epochs', '1e30'], 'would take 10000000000000000198846248386560 training '
         'steps, too many (at most 2147483647); lower --max_epochs'),
        (train + ['--max_epochs', '0.05'], '`train` would take 0 training steps (--max_epochs too '
         'small for batches of 64 on 640 images); raise --max_epochs'),
        (train + ['--batch_size', '1000'], 'the data has 640 images, fewer than one batch of 1000'),
        (train + ['--worker_timeout', 'nan'], '--worker_timeout must be positive'),
        (train + ['--worker_timeout', '1e300'], 'at most 1e+06'),
        (train + ['--strategy', 'mirrored', '--num_devices', '0'],
         '--num_devices must be at least 1'),
        (train + ['--strategy', 'multi_worker'], "TF_CONFIG address 'localhost:99999' is not "
         'host:port (a host name or address, and a port from 1 to 65535)'),
        (train + ['--deps', '-4,4,8,8,8,8,8,8,8,8,8,8,8'], "--deps takes non-negative integers, "
         "got -4 in '-4,4,8"),
        (train + ['--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8,'], "--deps takes comma-separated "
         "integers, got '' in"),
        (prune + ['--target_layers', '-3'], '--target_layers takes non-negative integers, got -3'),
        (prune + ['--itr_schedule', '0.3,-0.4'], '--itr_schedule takes non-negative numbers, got '
         '-0.4'),
        (prune + ['--itr_schedule', '0.3,1e400'], '--itr_schedule takes finite numbers'),
        (prune + ['--metric_limit', 'nan'], '--metric_limit must not be negative (a finite '
         'number), got nan'),
        (prune + ['--search_max_epochs', 'nan'], '--search_max_epochs must be positive'),
        (prune + ['--finetune_epochs', 'inf'], '--finetune_epochs must be positive'),
        (prune + ['--search_max_epochs', '0.05'], 'the search would take 0 training steps '
         '(--search_max_epochs too small'),
        (prune + ['--finetune_epochs', '1e30'], 'finetuning would take'),
        (['oracle', 'vc.hdf5', '--layers', '-1'] + data, '--layers takes non-negative integers'),
        (['eval', 'nan_conv.hdf5'] + data, "nan_conv.hdf5: dataset 'v0+cg+conv12+conv2d+kernel:0' "
         'holds 1 non-finite values (NaN or Inf; the first at index (0, 0, 0, 0))'),
        (['export', 'inf_conv.hdf5', '--out', 'out'], "dataset 'v0+cg+conv12+conv2d+kernel:0' "
         'holds 1 non-finite'),
        (prune[:2] + ['nan_conv.hdf5'] + prune[3:], 'holds 1 non-finite values'),
        (['eval', 'zero_mask.hdf5'] + data, 'mask base_mask_value0 removes every filter of '
         'layer 0'),
        (['export', 'nan_mask.hdf5', '--out', 'out'],
         'base_mask_value0 holds values outside 0..1'),
        (['summary', 'nan_mask.hdf5'], 'base_mask_value0 holds values outside 0..1'),
    ], tmp_path, files, [(diverging, prune[:2] + ['huge_conv.hdf5'] + prune[3:])])
    _check_diverged(diverged, diverging)


def test_csgd_refuses_non_finite_and_out_of_range_inputs(tmp_path, files, synthetic_dir):
    data = ['--data_dir', synthetic_dir, '--init_hdf5', 'dc40.hdf5', '--preset', 'smoke',
            '--max_epochs', '0.2', '--target_deps', '1-1-1']
    _refused(CSGD, [
        (['csgd1'] + data + ['--centri_strength', 'nan'], '--centri_strength must not be '
         'negative (a finite number), got nan'),
        (['csgd1'] + data + ['--bn_strength_ratio', 'inf'], '--bn_strength_ratio must not be '
         'negative'),
        (['csgd1'] + data + ['--target_deps', '1-1-1,'], "--target_deps: '' is not a width"),
        (['csgd1'] + data + ['--max_epochs', '0.05'], 'csgd1 would take 0 training steps '
         '(--max_epochs too small'),
        (['magnitude1'] + data + ['--max_epochs', '1e30'], 'magnitude1 would take'),
        (['train'] + data + ['--max_epochs', 'nan'], '--max_epochs must be positive'),
        (['train'] + data + ['--deps', '4-4-8-8-8-8-8-8-8-8-8-8-4,-1', '--model', 'vc'],
         'takes non-negative integers, got -1'),
    ], tmp_path, files)


@pytest.mark.parametrize('cluster, task, message', [
    ({'worker': ['host0:0']}, 0, 'a port from 1 to 65535'),
    ({'worker': ['host0:65536']}, 0, 'a port from 1 to 65535'),
    ({'worker': [':12345']}, 0, 'a host name or address'),
    ({'worker': ['[]:12345']}, 0, 'a host name or address'),
    ({'worker': ['host0:12345'], 'ps': ['host1:12345']}, ('ps', 0), 'must name this worker\'s '
     'own entry'),
])
def test_tf_config_addresses_and_own_entry(cluster, task, message):
    kind, index = task if isinstance(task, tuple) else ('worker', task)
    with pytest.raises(UserError, match=message.replace('(', r'\(')):
        cluster_from_tf_config(json.dumps({'cluster': cluster,
                                           'task': {'type': kind, 'index': index}}))


def test_tf_config_accepts_a_valid_cluster():
    cluster, kind, index = cluster_from_tf_config(json.dumps(
        {'cluster': {'worker': ['host0:1', '[::1]:65535']}, 'task': {'type': 'worker',
                                                                      'index': 1}}))
    assert (kind, index) == ('worker', 1) and cluster['worker'][1] == '[::1]:65535'
