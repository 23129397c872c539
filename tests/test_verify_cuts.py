"""Every cut verified in the run (issue 25): AOFP's pruning and C-SGD's trim of collapsed clusters
are compared with the model they came from on the first test images and must agree; a broken trim
ends the run before its file is written; magnitude pruning is reported only; `verify A B`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from csgd import clustering
from csgd.centripetal import cluster_deviation
from csgd.targets import parse_target_deps
from helpers import error_lines, random_weights
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.pruning.logit_check import compare_logits

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
VC_DEPS = [4, 4] + [8] * 11
PRUNE = ['--preset', 'smoke', '--itr_schedule', '0.25', '--batches_per_half', '2',
         '--metric_limit', '10', '--search_max_epochs', '3', '--finetune_epochs', '0.1']
DC40_DEPS = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
CSGD_ARGS = ['--preset', 'smoke', '--batch_size', '16', '--max_epochs', '0.1',
             '--target_deps', '1-1-1', '--cluster_method', 'even']
# Runs csgd_standalone.py's cases in one process, as tests/run_cases.py does, with the trim
# corrupted (one survivor's kernel moved) in working directories named broken*: a trim that is not
# exact although the clusters have collapsed. A case ['@copy', DIR] copies DIR to the case's cwd.
BROKEN_TRIM = '''
import json, os, runpy, shutil, sys
sys.path[:0] = [%r, os.path.join(%r, 'tests')]
from tf_benchmarks.engine.session import graph_mode
graph_mode()
import csgd.pipeline
from run_cases import run_case
surgery = csgd.pipeline.apply_surgery
def broken(trace, weights, plans):
    weights, deps = surgery(trace, weights, plans)
    if os.path.basename(os.getcwd()).startswith('broken'):
        kernel = trace.convs[1].kernel
        weights[kernel] = weights[kernel] + 0.5
    return weights, deps
csgd.pipeline.apply_surgery = broken
script, cases = sys.argv[1], json.loads(sys.argv[2])
driver = runpy.run_path(script)
for cwd, args in cases:
    if args[0] == '@copy':
        shutil.copytree(args[1], cwd, dirs_exist_ok=True)
        continue
    run_case(driver, cwd, args)
''' % (REPO, REPO)


def test_compare_logits_figures():
    a = np.array([[1.0, -4.0, 2.0], [0.5, 3.0, 1.0]])
    b = a + np.array([[0.0, 0.2, 0.0], [0.0, 0.0, 2.5]])   # image 2's top class moves
    c = compare_logits(a, b)
    assert c.images == 2 and c.max_rel_logit_diff == pytest.approx(2.5 / 4.0)
    assert c.top1_agreement == 0.5
    assert compare_logits(a, a).max_rel_logit_diff == 0.0
    with pytest.raises(UserError, match='non-finite'):
        compare_logits(a, a * np.inf)


def _save_random(model, deps, path, seed, collapse=None):
    weights = random_weights(model.trace(deps), seed)
    if collapse:
        _collapse(model.trace(deps), weights, collapse)
    hdf5_io.save_hdf5(str(path), weights, deps)
    return weights


def _collapse(trace, weights, plans):
    """Every cluster's members made equal to its survivor (kernels and BN vectors)."""
    for layer, clusters in trace.expand_to_groups(plans).items():
        kernel = weights[trace.convs[layer].kernel]
        for cluster in clusters:
            kernel[..., cluster] = kernel[..., [min(cluster)]]
    bn_plans = clustering.bn_channel_clusters(trace, plans)
    for bn in trace.bns:
        for role in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
            vector = weights['%s/%s' % (bn.scope, role)]
            for cluster in bn_plans[bn.index]:
                vector[cluster] = vector[min(cluster)]


def _even_plans(model, deps):
    """csgd1's clusters for --cluster_method even and --target_deps 1-1-1."""
    target, = parse_target_deps(model, deps, '1-1-1')
    return {root: clustering.even_clusters(deps[root], target[root])
            for root in model.group_roots()}


def _verify_lines(text):
    return [line for line in text.splitlines() if line.startswith('verify: ')]


def _figures(line):
    diff = float(line.split('max relative logit difference ')[1].split(',')[0])
    agreement = float(line.split('top-1 agreement ')[1].split('%')[0])
    return diff, agreement


def test_csgd_trim_of_collapsed_clusters_is_verified(csgd_runs):
    works, (run, verify, _, _) = csgd_runs
    assert run['code'] == 0, run['stderr'][-2000:]
    log = (works['csgd'] / 'dc40_csgd1_important_log.txt').read_text()
    line, = _verify_lines(log)
    assert line.startswith('verify: trimmed vs untrimmed on 64 test images: ')
    assert 'clusters collapsed' in line and 'enforced' in line
    lines = log.splitlines()
    assert lines.index(line) == lines.index(next(l for l in lines if 'eval after trimming' in l)) - 1
    entry = json.loads((works['csgd'] / 'results.json').read_text())[
        'runs']['csgd1']['iterations'][0]['trimmed']['verify']
    assert entry['images'] == 64 and entry['enforced'] is True and entry['tolerance'] == 1e-4
    assert entry['max_rel_logit_diff'] < 1e-5 and entry['top1_agreement'] == 1.0
    assert _figures(line)[0] == pytest.approx(entry['max_rel_logit_diff'], rel=1e-2)
    # `verify` of the same two files measures what the run did
    assert verify['code'] == 0, verify['stderr'][-2000:]
    out, = _verify_lines(verify['stdout'])
    assert out.startswith('verify: dc40_csgd1_itr0_prunedweights.hdf5 vs dc40_csgd1_itr0_sted.hdf5')
    assert _figures(out) == _figures(line)


def test_broken_trim_ends_the_run_before_the_file(csgd_runs):
    works, (_, _, broken, _) = csgd_runs
    assert broken['code'] == 2
    error, = error_lines(broken['stderr'])
    assert error.startswith('error: csgd1.itr0.trim: the trimmed model does not compute what the '
                            'untrimmed one does although its clusters have collapsed')
    diff = float(error.split('max relative logit difference ')[1].split(' ')[0])
    assert diff > 1e-2 and '> --verify_tolerance 0.0001' in error
    assert '--verify_tolerance' in error.split('was not written')[1]
    assert 'restarting from stage csgd1.itr0.trim' in broken['stdout']
    assert not (works['broken'] / 'dc40_csgd1_itr0_prunedweights.hdf5').exists()
    assert (works['broken'] / 'dc40_csgd1_itr0_sted.hdf5').exists()
    assert not _verify_lines((works['broken'] / 'dc40_csgd1_important_log.txt').read_text())
    record = json.loads((works['broken'] / 'run.json').read_text())
    assert record['stages']['csgd1.itr0.trim']['status'] == 'running'
    assert 'trimmed' not in json.loads((works['broken'] / 'results.json').read_text())[
        'runs']['csgd1']['iterations'][0]


def test_magnitude_pruning_is_reported_not_enforced(csgd_runs):
    works, (_, _, _, magnitude) = csgd_runs
    assert magnitude['code'] == 0, magnitude['stderr'][-2000:]
    line, = _verify_lines((works['csgd'] / 'dc40_magnitude1_important_log.txt').read_text())
    assert line.startswith('verify: pruned vs unpruned on 64 test images') and 'reported only' in line
    entry = json.loads((works['csgd'] / 'results.json').read_text())[
        'runs']['magnitude1']['iterations'][0]['pruned']['verify']
    assert entry['enforced'] is False and entry['max_rel_logit_diff'] > 1e-3
    assert _figures(line)[0] == pytest.approx(entry['max_rel_logit_diff'], rel=1e-2)


def _start(cases, runner, log):
    """A process running the driver's cases (`runner`: python's arguments before the script),
    writing to the file `log` (no pipe to fill while the other process is waited for)."""
    out = open(log, 'w+')
    return subprocess.Popen([sys.executable] + runner + [json.dumps(
        [[str(cwd), list(args)] for cwd, args in cases])], stdout=out,
        stderr=subprocess.STDOUT, text=True), out


def _outcomes(started, count):
    process, out = started
    process.wait(timeout=600)
    out.seek(0)
    text = out.read()
    out.close()
    outcomes = [json.loads(l[5:]) for l in text.splitlines() if l.startswith('CASE ')]
    assert len(outcomes) == count, text[-5000:]
    return outcomes


def _csgd_cases(works, data_dir):
    """csgd1 from a collapsed start (even clusters, members equal), `verify` of its trim, its trim
    redone broken in a copy of the directory, and magnitude1 from an uncollapsed start."""
    dc40 = get_model('dc40')
    plans = _even_plans(dc40, DC40_DEPS)
    weights = _save_random(dc40, DC40_DEPS, works['csgd'] / 'dc40_scratch_savedweights.hdf5', 3,
                           plans)
    _save_random(dc40, DC40_DEPS, works['csgd'] / 'uncollapsed.hdf5', 4)
    trace = dc40.trace(DC40_DEPS)
    assert cluster_deviation(weights, trace, plans,
                             clustering.bn_channel_clusters(trace, plans)) == 0.0
    data = ['--data_dir', data_dir, '--deps', ','.join(map(str, DC40_DEPS))]
    return [(works['csgd'], ['csgd1'] + data + CSGD_ARGS),
            (works['csgd'], ['verify', 'dc40_csgd1_itr0_sted.hdf5',
                             'dc40_csgd1_itr0_prunedweights.hdf5', '--data_dir', data_dir]),
            (works['broken'], ['@copy', str(works['csgd'])]),
            (works['broken'], ['csgd1', '--restart_from', 'csgd1.itr0.trim'] + data + CSGD_ARGS),
            (works['csgd'], ['magnitude1', '--init_hdf5', 'uncollapsed.hdf5'] + data + CSGD_ARGS)]


def _aofp_cases(work, data_dir):
    """A tiny `prune` from random weights, then `verify` of its files, of two unrelated files, of
    files of two models and of one file."""
    vc = get_model('vc')
    _save_random(vc, VC_DEPS, work / 'vc_scratch_savedweights.hdf5', 5)
    _save_random(vc, VC_DEPS, work / 'other.hdf5', 6)
    _save_random(get_model('dc40'), DC40_DEPS, work / 'dc40.hdf5', 7)
    prefix = 'bds_exps/vc_reproduce_itr0_'
    data = ['--data_dir', data_dir]
    return [(work, ['prune'] + data + PRUNE),
            (work, ['verify', prefix + 'tunedweights.hdf5', prefix + 'prunedweights.hdf5'] + data),
            (work, ['verify', 'vc_scratch_savedweights.hdf5', 'other.hdf5'] + data),
            (work, ['verify', 'vc_scratch_savedweights.hdf5', 'dc40.hdf5'] + data),
            (work, ['verify', 'other.hdf5'] + data)]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, synthetic_dir):
    """Both drivers' cases, each driver in one process, the two processes side by side."""
    works = {name: tmp_path_factory.mktemp(name) for name in ('csgd', 'broken', 'aofp')}
    csgd_cases = _csgd_cases(works, synthetic_dir)
    aofp_cases = _aofp_cases(works['aofp'], synthetic_dir)
    logs = tmp_path_factory.mktemp('logs')
    processes = [_start(csgd_cases, ['-c', BROKEN_TRIM, CSGD], logs / 'csgd.txt'),
                 _start(aofp_cases, [os.path.join(REPO, 'tests', 'run_cases.py'), AOFP],
                        logs / 'aofp.txt')]
    return works, {'csgd': _outcomes(processes[0], len(csgd_cases) - 1),
                   'aofp': _outcomes(processes[1], len(aofp_cases))}


@pytest.fixture(scope='module')
def csgd_runs(runs):
    return runs[0], runs[1]['csgd']


@pytest.fixture(scope='module')
def aofp_runs(runs):
    return runs[0]['aofp'], runs[1]['aofp']


def test_aofp_pruning_is_verified(aofp_runs):
    work, (prune, verify, _, _, _) = aofp_runs
    assert prune['code'] == 0, prune['stderr'][-2000:]
    line, = _verify_lines((work / 'bds_exps' / 'vc_reproduce_itr0_bdslog.txt').read_text())
    assert line.startswith('verify: pruned vs tuned (masked) on 64 test images: ')
    assert line in prune['stdout']
    assert len((work / 'bds_overall_logs.txt').read_text().splitlines()) == 3
    pruned = json.loads((work / 'results.json').read_text())[
        'runs']['prune']['iterations'][0]['pruned']
    assert pruned['widths'] != VC_DEPS   # the search removed filters: a real cut
    entry = pruned['verify']
    assert entry['images'] == 64 and entry['enforced'] is True and entry['tolerance'] == 1e-4
    assert entry['max_rel_logit_diff'] < 1e-5 and entry['top1_agreement'] == 1.0
    assert verify['code'] == 0, verify['stderr'][-2000:]
    out, = _verify_lines(verify['stdout'])
    assert out.startswith('verify: bds_exps/vc_reproduce_itr0_prunedweights.hdf5 vs '
                          'bds_exps/vc_reproduce_itr0_tunedweights.hdf5 (masked) on 64 test images')
    diff, agreement = _figures(out)
    assert diff < 1e-5 and agreement == 100.0


def test_verify_of_unrelated_and_mismatched_files(aofp_runs):
    _, (_, _, unrelated, models, one) = aofp_runs
    assert unrelated['code'] == 0, unrelated['stderr'][-2000:]
    diff, agreement = _figures(_verify_lines(unrelated['stdout'])[0])
    assert diff > 0.1 and agreement < 100.0
    for outcome, message in ((models, 'verify compares two versions of one model: '
                                      'vc_scratch_savedweights.hdf5 holds a vc, dc40.hdf5 a dc40'),
                             (one, 'verify takes two weights files')):
        assert outcome['code'] == 2
        error, = error_lines(outcome['stderr'])
        assert error.startswith('error: ' + message), error
