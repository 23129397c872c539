"""`oracle`: the rank statistics in NumPy; on a tiny vc with planted filter scales, the oracle's
exact scores and AOFP's converging estimate; the oracle's loss increase against physically pruned
copies; and the command end to end (files, identical JSON on two runs, clear errors)."""

import json
import os

import numpy as np
import pytest

from aofp.oracle import command as oracle, compare as oc
from conftest import REPO
from helpers import error_lines, random_images, random_weights, run_driver_cases
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.engine.evaluation import evaluate_file
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.models.resnet_model import followers
from tf_benchmarks.pruning.surgery import apply_surgery, clusters_from_mask

SCRIPT = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
VC_TINY = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]


# -- pure rank statistics -------------------------------------------------------------------------
def test_rankdata_averages_ties_and_ranks_inf_last():
    np.testing.assert_array_equal(oc.rankdata([3, 1, 4, 1, 5]), [3, 1.5, 4, 1.5, 5])
    np.testing.assert_array_equal(oc.rankdata([np.inf, 0.5, np.inf, -2]), [3.5, 2, 3.5, 1])
    with pytest.raises(ValueError):
        oc.rankdata([1.0, np.nan])


def test_spearman_known_values():
    a = [1, 2, 3, 4, 5]
    assert oc.spearman(a, [10, 20, 30, 40, 50]) == 1.0
    assert oc.spearman(a, [5, 4, 3, 2, 1]) == -1.0
    # no ties: 1 - 6 sum(d^2) / (n (n^2 - 1)); ranks of b are 2,1,4,3,5 -> sum d^2 = 4
    assert oc.spearman(a, [0.2, 0.1, 0.4, 0.3, 0.5]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    # ties: ranks of b are 1, 2, 3.5, 5, 3.5 -> Pearson of the ranks = 8 / sqrt(10 * 9.5)
    assert oc.spearman(a, [5, 6, 7, 8, 7]) == pytest.approx(8 / np.sqrt(95), abs=1e-15)
    assert np.isnan(oc.spearman(a, [1, 1, 1, 1, 1])) and np.isnan(oc.spearman([1], [2]))


def test_least_important_overlap_and_removal_sizes():
    assert oc.least_important([0.3, 0.1, 0.1, 0.9, 0.0], 2) == [1, 4]  # tie: smaller index
    assert oc.overlap([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]) == 0.0
    assert oc.overlap([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]) == pytest.approx(2 / 3)
    assert oc.removal_sizes(16) == {'1/8': 2, '1/4': 4, '1/2': 8}
    assert oc.removal_sizes(2) == {'1/8': 1, '1/4': 1, '1/2': 1}
    with pytest.raises(ValueError):
        oc.removal_sizes(1)


def test_compare_layer_with_a_known_removal_cost():
    truth = np.array([0.5, 0.1, 0.8, 0.3, 0.0, 0.7, 0.2, 0.6])   # additive importance
    calls = []

    def removal_loss(filters):
        calls.append(tuple(filters))
        return truth[filters].sum()
    result = oc.compare_layer(truth, truth ** 2, {'perfect': truth * 3, 'reversed': -truth},
                              removal_loss)
    assert result['spearman']['perfect'] == {'oracle_loss': 1.0, 'oracle_metric': 1.0}
    assert result['spearman']['reversed']['oracle_loss'] == -1.0
    assert result['spearman']['oracle_metric'] == {'oracle_loss': 1.0}
    assert result['half_overlap']['reversed']['oracle_loss'] == 0.0
    quarter = result['removal']['1/4']
    assert quarter['k'] == 2 and quarter['removed']['oracle_loss'] == [1, 4]
    assert quarter['loss_increase']['perfect'] == pytest.approx(0.1)
    assert result['removal']['1/2']['loss_increase']['reversed'] == pytest.approx(2.6)
    assert len(calls) == len(set(calls)) == 6  # each distinct set of filters is evaluated once


# -- planted structure ----------------------------------------------------------------------------
SCALES = np.array([0.4, 0.8, 0.2, 0.6])  # importance order of conv12's filters: 2, 0, 3, 1
PLANTED_DEPS = [2] * 12 + [4]


def _planted_weights():
    """conv12's filter c outputs the constant s_c (BN gamma 0, beta s_c); affine0 copies them to its
    first units, affine1 sums them into logit 0. With every label 0 the loss is log(1 + 10 e^-M),
    M = sum(s), and removing filter c costs exactly log(1 + 10 e^-(M - s_c)) - log(1 + 10 e^-M);
    its relative error at affine0 is s_c^2 / sum(s^2)."""
    vc = get_model('vc')
    weights = random_weights(vc.trace(PLANTED_DEPS), 3)
    weights['v0/cg/conv12/batchnorm12/gamma'][:] = 0.0
    weights['v0/cg/conv12/batchnorm12/beta'][:] = SCALES
    weights['v0/cg/affine0/dense/kernel'] = np.eye(4, 512, dtype=np.float32)
    weights['v0/cg/affine0/dense/bias'][:] = 0.0
    head = np.zeros((512, 11), np.float32)
    head[:4, 0] = 1.0
    weights['v0/cg/affine1/dense/kernel'] = head
    weights['v0/cg/affine1/dense/bias'][:] = 0.0
    return vc, weights


def test_planted_order_oracle_exact_and_aofp_estimate_converges(synthetic_dir):
    vc, weights = _planted_weights()
    batches = [(random_images(8, seed), np.zeros(8, np.int32)) for seed in (1, 2)]
    graph = oracle.OracleGraph(vc, PLANTED_DEPS, weights, [12], batches)
    try:
        full, scores = oracle.oracle_scores(graph, log=lambda line: None)
    finally:
        graph.close()
    m, energy = SCALES.sum(), (SCALES ** 2).sum()
    assert full == pytest.approx(np.log1p(10 * np.exp(-m)), rel=1e-6)
    expected_increase = np.log1p(10 * np.exp(-(m - SCALES))) - np.log1p(10 * np.exp(-m))
    np.testing.assert_allclose(scores[12]['loss_increase'], expected_increase, rtol=1e-5)
    np.testing.assert_allclose(scores[12]['metric'], SCALES ** 2 / energy, rtol=1e-5)
    order = [2, 0, 3, 1]
    assert list(np.argsort(scores[12]['loss_increase'])) == order
    assert list(np.argsort(scores[12]['metric'])) == order

    # AOFP drops 2 of the 4 filters per step: a dropped filter's expected metric is
    # (s_c^2 + (energy - s_c^2) / 3) / energy, increasing in s_c; the mean converges to it.
    expected = (SCALES ** 2 + (energy - SCALES ** 2) / 3) / energy
    estimate = oracle.aofp_estimate(vc, PLANTED_DEPS, weights, [12], synthetic_dir, steps=400,
                                    batch_size=4, checkpoints=(12, 400), log=lambda line: None)[12]
    assert estimate['drops'].sum() == 2 * 400
    early, final = (np.abs(estimate['snapshots'][s] - expected).max() for s in (12, 400))
    assert final < 0.03 and final < early / 2, (early, final)
    assert list(np.argsort(estimate['estimate'])) == order
    assert oc.spearman(estimate['estimate'], scores[12]['loss_increase']) == 1.0


# -- the oracle's loss increase is the physically pruned copy's ------------------------------------
@pytest.mark.parametrize('name,deps,layers,cases', [
    ('vc', VC_TINY, [0, 5], [(0, 1), (0, 3), (5, 6)]),
    ('src56', [d // 4 for d in get_model('src56').default_deps], [19, 20], [(19, 2), (20, 5)])])
def test_oracle_loss_increase_equals_the_pruned_copy(synthetic_dir, name, deps, layers, cases):
    """Residual group 19 (a stage's pacesetter with all its followers) and internal layer 20 too."""
    model = get_model(name)
    trace = model.trace(deps)
    weights = random_weights(trace, 21)
    if name == 'src56':  # small residual branches: random BN statistics would blow up the stream
        for f in followers(9):
            for role in ('gamma', 'beta'):
                weights['v0/cg/conv%d/batchnorm%d/%s' % (f, f, role)] *= 0.3
    batches = oracle.load_test_batches(synthetic_dir, 100, 5)
    assert sum(len(labels) for _, labels in batches) == 200  # the whole test split
    graph = oracle.OracleGraph(model, deps, weights, layers, batches)
    try:
        full, scores = oracle.oracle_scores(graph, log=lambda line: None)
    finally:
        graph.close()
    reference = evaluate_file(model, hdf5_io.WeightFile(weights, tuple(deps)), synthetic_dir, 100)
    assert full == pytest.approx(reference.loss, abs=2e-6)
    for layer, f in cases:
        mask = np.ones(deps[layer])
        mask[f] = 0
        pruned, pruned_deps = apply_surgery(trace, weights, {layer: clusters_from_mask(mask)})
        loss = evaluate_file(model, hdf5_io.WeightFile(pruned, tuple(pruned_deps)),
                             synthetic_dir, 100).loss
        increase = scores[layer]['loss_increase'][f]
        assert abs(increase) > 1e-3
        assert increase == pytest.approx(loss - reference.loss, abs=5e-6), (layer, f)


# -- the command -----------------------------------------------------------------------------------
def test_oracle_command_files_identical_json_and_errors(tmp_path, synthetic_dir):
    vc, src56 = get_model('vc'), get_model('src56')
    weights = random_weights(vc.trace(VC_TINY), 5)
    base = str(tmp_path / 'base.hdf5')
    hdf5_io.save_hdf5(base, weights, VC_TINY)
    hdf5_io.save_hdf5(str(tmp_path / 'tuned.hdf5'), weights, VC_TINY, {0: np.ones(4)})
    src_deps = [d // 8 for d in src56.default_deps]
    hdf5_io.save_hdf5(str(tmp_path / 'src56.hdf5'), random_weights(src56.trace(src_deps), 1),
                      src_deps)
    runs = [tmp_path / 'run1', tmp_path / 'run2', tmp_path / 'bad']
    for d in runs:
        d.mkdir()
    common = ['--preset', 'smoke', '--data_dir', synthetic_dir, '--batch_size', '16']
    ok = ['oracle', base, '--layers', '0,12', '--steps', '6'] + common
    bad = [
        (['oracle', str(tmp_path / 'missing.hdf5')] + common, 'does not exist'),
        (['oracle', base, '--layers', '13'] + common, '--layers: vc has conv layers 0..12, got 13'),
        (['oracle', str(tmp_path / 'src56.hdf5'), '--model', 'src56', '--layers', '2'] + common,
         'layer 2 is tied to layer 0'),
        (['oracle', base, '--batches', '0'] + common, '--batches must be at least 1'),
        (['oracle', base, '--steps', '0'] + common, '--steps must be at least 1'),
        (['oracle', str(tmp_path / 'tuned.hdf5')] + common, 'carries AOFP masks'),
        (['oracle'] + common, 'usage: aofp_standalone.py'),
    ]
    outcomes = run_driver_cases(SCRIPT, [(runs[0], ok), (runs[1], ok)] +
                                [(runs[2], args) for args, _ in bad])
    assert [o['code'] for o in outcomes[:2]] == [0, 0], outcomes[0]['stderr'][-2000:]
    for outcome, (_, message) in zip(outcomes[2:], bad):
        lines = error_lines(outcome['stderr'])
        assert outcome['code'] == 2 and len(lines) == 1 and message in lines[0], outcome
    assert os.listdir(runs[2]) == []

    names = sorted(os.listdir(runs[0]))
    assert names == ['oracle_vc.json', 'oracle_vc_layer0.png', 'oracle_vc_layer12.png']
    for name in names:
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    for png in names[1:]:
        assert (runs[0] / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    result = json.loads((runs[0] / 'oracle_vc.json').read_text())
    assert result['model'] == 'vc' and result['deps'] == VC_TINY
    assert result['oracle']['test_images'] == 200 and result['aofp_estimate']['steps'] == 6
    layer = result['layers']['12']
    assert len(layer['filters']['oracle_loss_increase']) == 8
    assert set(layer['spearman']) == {'oracle_metric', 'aofp', 'l1', 'gamma'}
    assert sorted(layer['removal']) == ['1/2', '1/4', '1/8']
    assert [c['steps'] for c in layer['aofp_convergence']] == [1, 3, 6]
