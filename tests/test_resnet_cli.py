"""Both methods end to end on a narrow `src56` through the drivers: a base trained by `train
--model src56`, C-SGD over an iterative schedule (every channel group collapsed, trimming changes no
logit), AOFP on the internal layers (tuned == pruned), and the files in the original key format."""

import json
import os

import h5py
import numpy as np
import pytest

from conftest import REPO
from csgd import clustering
from csgd.centripetal import cluster_deviation
from csgd.clusters_file import load_clusters
from helpers import random_images, run_script
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network import flops

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
NARROW = [d // 4 for d in get_model('src56').default_deps]   # 4 / 8 / 16
COMMON = ['--model', 'src56', '--preset', 'smoke', '--batch_size', '16']


@pytest.fixture(scope='module')
def base(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('src56')
    run_script(AOFP, ['train', '--data_dir', synthetic_dir, '--max_epochs', '0.5', '--deps',
                      ','.join(map(str, NARROW))] + COMMON, work)
    with h5py.File(work / 'src56_scratch_savedweights.hdf5', 'r') as f:
        assert f['deps'][()].tolist() == NARROW
        assert f['v0+cg+conv19+conv2d+kernel:0'].shape == (1, 1, 4, 8)
        assert f['v0+cg+conv21+batchnorm21+gamma:0'].shape == (8,)
        assert f['v0+cg+affine0+dense+kernel:0'].shape == (16, 10)
    return work


def test_csgd1_over_two_iterations_trims_tied_groups_exactly(base, synthetic_dir):
    run_script(CSGD, ['csgd1', '--data_dir', synthetic_dir, '--max_epochs', '3',
                      '--target_deps', '3/4,1/2'] + COMMON, base)
    src56 = get_model('src56')
    log = (base / 'src56_csgd1_important_log.txt').read_text().splitlines()
    for k, width in ((0, 3), (1, 2)):
        before = [l for l in log if 'eval before trimming at itr %d' % k in l]
        after = [l for l in log if 'eval after trimming at itr %d' % k in l]
        assert len(before) == len(after) == 1
        sted = hdf5_io.read_hdf5(str(base / ('src56_csgd1_itr%d_sted.hdf5' % k)))
        pruned = hdf5_io.read_hdf5(str(base / ('src56_csgd1_itr%d_prunedweights.hdf5' % k)))
        assert pruned.deps[0] == pruned.deps[2] == width and pruned.deps[38] == 4 * width
        plans = load_clusters(str(base / ('src56_csgd1_itr%d_eqcls.json' % k)))
        assert sorted(plans) == src56.group_roots()   # pacesetters stand for their followers
        trace = src56.trace(sted.deps)
        bn_plans = clustering.bn_channel_clusters(trace, plans)
        assert cluster_deviation(sted.weights, trace, plans, bn_plans) < 1e-2  # moving stats lag
        images = random_images(8)
        full = predict_logits(src56, sted.deps, sted.weights, images)
        trimmed = predict_logits(src56, pruned.deps, pruned.weights, images)
        # 120 steps leave the BN moving statistics (an EMA, decay 0.9) of cluster members slightly
        # apart; trimming itself is exact (test_surgery, 1e-4) and the real-subset run ends at 7e-7
        assert np.abs(trimmed - full).max() <= 1e-3 * np.abs(full).max()
    assert hdf5_io.read_hdf5(str(base / 'src56_csgd1_itr1_sted.hdf5')).deps == tuple(
        d * 3 // 4 for d in NARROW)
    # both FLOPs counts of the structure (the projections as built and as 2x2 convs)
    target = [d * 3 // 4 for d in NARROW]
    counts = [(flops.count_flops(src56, d), flops.count_flops(src56, d, 'projection_2x2'))
              for d in (NARROW, target)]
    structure = [l for l in log if 'target structure 3/4' in l][0]
    assert 'FLOPs %d -> %d' % (counts[0][0], counts[1][0]) in structure
    assert '(projection_2x2: %d -> %d, ' % (counts[0][1], counts[1][1]) in structure, structure
    entry = json.loads((base / 'results.json').read_text())['runs']['csgd1']['iterations'][0]
    assert entry['trimmed']['flops_projection_2x2'] == counts[1][1]


def test_aofp_prune_on_the_internal_layers(base, synthetic_dir):
    run_script(AOFP, ['prune', '--data_dir', synthetic_dir, '--itr_schedule', '0.2',
                      '--batches_per_half', '4', '--metric_limit', '10', '--finetune_epochs',
                      '0.5'] + COMMON, base)
    prefix = str(base / 'bds_exps' / 'src56_reproduce_itr0')
    tuned = hdf5_io.read_hdf5(prefix + '_tunedweights.hdf5')
    internal = [p + 1 + 2 * b for p in (0, 19, 38) for b in range(9)]
    assert sorted(tuned.masks) == internal
    pruned = hdf5_io.read_hdf5(prefix + '_prunedweights.hdf5')
    expected = list(NARROW)
    for layer in internal:
        expected[layer] = int(tuned.masks[layer].sum())
    assert list(pruned.deps) == expected and expected != NARROW
    lines = (base / 'bds_overall_logs.txt').read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith('src56,bds_exps/src56_reproduce_itr0_tuned')
    other = flops.flops_pruned_ratio(get_model('src56'), expected, NARROW, 'projection_2x2')
    assert 'flops_pruned_projection_2x2=%.4f' % other in lines[1], lines[1]
    top1 = [l.split('top1=')[1].split(',')[0] for l in lines]
    assert top1[0] == top1[1]
