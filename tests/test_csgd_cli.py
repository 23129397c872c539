"""End to end through `python csgd/csgd_standalone.py` on a tiny DenseNet-40 and the synthetic set:
after csgd1 every cluster is collapsed and trimming changes no output; files, keys, logs, errors."""

import json
import os

import h5py
import numpy as np
import pytest

from conftest import REPO
from csgd import clustering
from csgd.centripetal import cluster_deviation
from csgd.clusters_file import load_clusters
from helpers import error_lines, random_images, run_driver_cases, run_script
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.models.registry import get_model

SCRIPT = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
TINY_DEPS = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
TINY = ['--preset', 'smoke', '--batch_size', '16', '--deps', ','.join(map(str, TINY_DEPS))]
TARGET = ['--target_deps', '1-1-1']
# 120 steps at LR 0.01 with strength 30: cluster differences shrink by ~0.7 a step, then the BN
# moving statistics of the merged channels follow (x0.9 a step)
COLLAPSE = ['--max_epochs', '5', '--centri_strength', '30']


def run(args, cwd, check=True):
    return run_script(SCRIPT, args, cwd, check)


@pytest.fixture(scope='module')
def work(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('csgd')
    run(['train', '--data_dir', synthetic_dir, '--max_epochs', '1'] + TINY, work)
    return work


def _numbers(line):
    return line.split()[2:5]


def test_csgd1_collapses_clusters_and_trims_exactly(work, synthetic_dir):
    run(['csgd1', '--data_dir', synthetic_dir] + COLLAPSE + TARGET + TINY, work)
    log = (work / 'dc40_csgd1_important_log.txt').read_text().splitlines()
    for message in ('CSGD: start itr 0', 'I calculate eqcls by kmeans', 'eval at itr 0',
                    'C-SGD train completed. save to: dc40_csgd1_itr0_sted.hdf5',
                    'finished trimming at itr 0', 'target structure 1-1-1: FLOPs'):
        assert any(message in line for line in log), message
    before = [l for l in log if 'eval before trimming' in l]
    after = [l for l in log if 'eval after trimming' in l]
    assert len(before) == len(after) == 1
    assert _numbers(before[0]) == _numbers(after[0])

    dc40 = get_model('dc40')
    trace = dc40.trace(TINY_DEPS)
    plans = load_clusters(str(work / 'dc40_csgd1_itr0_eqcls.json'))
    assert sorted(plans) == list(range(39))
    assert [len(plans[l]) for l in (0, 1, 13, 14, 26, 38)] == [4, 1, 28, 1, 52, 1]
    sted = hdf5_io.read_hdf5(str(work / 'dc40_csgd1_itr0_sted.hdf5'))
    assert sted.deps == tuple(TINY_DEPS)
    bn_plans = clustering.bn_channel_clusters(trace, plans)
    assert cluster_deviation(sted.weights, trace, plans, bn_plans) <= 1e-5

    pruned = hdf5_io.read_hdf5(str(work / 'dc40_csgd1_itr0_prunedweights.hdf5'))
    target = [4] + [1] * 12 + [28] + [1] * 12 + [52] + [1] * 12
    assert pruned.deps == tuple(target)
    images = random_images(16)
    full = predict_logits(dc40, TINY_DEPS, sted.weights, images)
    trimmed = predict_logits(dc40, target, pruned.weights, images)
    np.testing.assert_allclose(trimmed, full, atol=1e-4, rtol=0)

    # results.json: start, trained and trimmed, and the collapse over the steps
    results = json.loads((work / 'results.json').read_text())['runs']['csgd1']
    iteration, = results['iterations']
    assert results['method'] == 'csgd' and results['base']['widths'] == TINY_DEPS
    assert iteration['start']['widths'] == iteration['trained']['widths'] == TINY_DEPS
    assert iteration['trimmed']['widths'] == target
    assert iteration['trimmed']['top1'] == iteration['trained']['top1']
    assert '%.5f' % iteration['trimmed']['top1'] == _numbers(after[0])[0]
    structure = [l for l in log if l.startswith('target structure')][0]
    assert '(%.2f%% removed)' % (100 * iteration['trimmed']['flops_removed']) in structure
    trained = iteration['trained']
    steps, spread = trained['cluster_difference_steps'], trained['cluster_difference']
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) == len(spread) >= 3
    assert spread[0] > 1e-3 and spread[-1] <= 1e-5
    assert trained['max_cluster_difference'] <= 1e-5
    results_bytes = (work / 'results.json').read_bytes()

    stamps = {p: os.path.getmtime(p) for p in work.glob('dc40_csgd1*')}
    run(['csgd1', '--data_dir', synthetic_dir] + COLLAPSE + TARGET + TINY, work)
    assert {p: os.path.getmtime(p) for p in work.glob('dc40_csgd1*')} == stamps
    assert (work / 'dc40_csgd1_important_log.txt').read_text().splitlines() == log
    assert (work / 'results.json').read_bytes() == results_bytes


def test_magnitude1_files_keys_and_eval(work, synthetic_dir):
    run(['magnitude1', '--data_dir', synthetic_dir, '--max_epochs', '1'] + TARGET + TINY, work)
    plans = load_clusters(str(work / 'dc40_equivalent_eqcls_magnitude1.json'))
    assert len(plans[1]) == 1 and sorted(plans[1][0]) == [0, 1]   # dropped one joins the kept one
    target = [4] + [1] * 12 + [28] + [1] * 12 + [52] + [1] * 12
    for name in ('dc40_magnitude1_prunedweights.hdf5', 'magnitude1_trained.hdf5'):
        with h5py.File(work / name, 'r') as f:
            assert f['deps'][()].tolist() == target
            assert f['stage1+block0+conv1+kernel:0'].shape == (3, 3, 4, 1)
            assert f['stage1+block1+block1+gamma:0'].shape == (5,)
            assert f['fc10+kernel:0'].shape == (4 + 28 + 52 - 28 - 4 + 12, 10)
            assert 'fc10+bias:0' in f and 'bnlast+moving_variance:0' in f
    log = (work / 'dc40_magnitude1_important_log.txt').read_text()
    assert 'eval after finetuning' in log and 'eval after magnitude pruning' in log
    results = json.loads((work / 'results.json').read_text())['runs']
    iteration, = results['magnitude1']['iterations']
    assert iteration['pruned']['widths'] == iteration['finetuned']['widths'] == target
    assert iteration['finetuned']['file'] == 'magnitude1_trained.hdf5'
    assert 'csgd1' in results  # both runs of the directory
    out = run(['eval', 'magnitude1_trained.hdf5', '--data_dir', synthetic_dir], work).stdout
    assert 'precision @ 1 = ' in out
    record = (work / 'origin_dc40_eval_record.txt').read_text().splitlines()
    assert len(record) == 1 and record[0].split()[1] == 'magnitude1_trained.hdf5'


def test_other_settings_in_the_same_directory_are_refused(work, synthetic_dir):
    """After csgd1 and magnitude1 finished above, a run with another setting stops at once,
    naming the setting and both values, and changes nothing; `summary` counts the FLOPs the log
    states, and `report` draws the four plots of the directory."""
    args = ['--data_dir', synthetic_dir] + COLLAPSE + TARGET + TINY
    files = {p: p.read_bytes() for p in work.iterdir() if p.is_file()}
    outcomes = run_driver_cases(SCRIPT, [
        (work, ['csgd1'] + args + ['--target_deps', '2-1-1']),
        (work, ['csgd1'] + args + ['--cluster_method', 'even']),
        (work, ['csgd1'] + args + ['--centri_strength', '5']),  # the last one counts
        (work, ['magnitude1', '--data_dir', synthetic_dir, '--max_epochs', '1', '--magnitude_variant',
                'clean'] + TARGET + TINY),
        (work, ['summary', 'dc40_csgd1_itr0_prunedweights.hdf5', '--base',
                'dc40_scratch_savedweights.hdf5', '--json']),
        (work, ['report'])])
    expected = ['csgd1.itr0.clusters: target_deps was "1-1-1", now "2-1-1"',
                'csgd1.itr0.clusters: cluster_method was "kmeans", now "even"',
                'csgd1.itr0.train: centri_strength was 30.0, now 5.0',
                'magnitude1.prune: variant was "original", now "clean"']
    for outcome, line in zip(outcomes, expected):
        assert outcome['code'] == 2 and len(error_lines(outcome['stderr'])) == 1
        assert line in outcome['stderr'] and '--restart_from' in outcome['stderr'], outcome
    summary, report = outcomes[4:]
    assert summary['code'] == 0 and report['code'] == 0, (summary, report)
    total = json.loads(summary['stdout'])['total']
    structure = [l for l in (work / 'dc40_csgd1_important_log.txt').read_text().splitlines()
                 if l.startswith('target structure')][0]
    assert 'FLOPs %d -> %d' % (total['base_flops'], total['flops']) in structure
    assert 'params %d -> %d' % (total['base_params'], total['params']) in structure
    assert sorted(p.name for p in work.glob('*.png')) == [
        'report_csgd1_cluster_difference.png', 'report_csgd1_vs_magnitude1.png',
        'report_csgd1_widths.png', 'report_magnitude1_widths.png']
    assert {p: p.read_bytes() for p in work.iterdir() if p.is_file() and p.suffix != '.png'} \
        == files
