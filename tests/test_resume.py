"""A run killed anywhere ends exactly as one never killed: `prune` and `csgd1` with --deterministic
are killed with SIGKILL at random moments (in a training step, inside a checkpoint write, between
stages) and re-run; every hdf5 file and every log line (time stamps aside) equals an uninterrupted
run's. With the search state's loader broken, the same procedure gives different files."""

import glob
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import run_script

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
AOFP_TINY = ['--preset', 'smoke', '--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8']
AOFP_PRUNE = ['prune', '--deterministic', '--preset', 'smoke', '--itr_schedule', '0.2,0.4',
              '--batches_per_half', '4', '--finetune_epochs', '0.5', '--search_max_epochs', '20',
              '--metric_limit', '10', '--checkpoint_every', '3']
CSGD_RUN = ['csgd1', '--deterministic', '--model', 'vc', '--preset', 'smoke', '--batch_size', '16',
            '--max_epochs', '1', '--target_deps', '0.5', '--checkpoint_every', '7']
STAMP = re.compile(r'\d{4},[A-Z][a-z]{2},\d{2},\d{2}:\d{2}:\d{2}')
SEED = int(os.environ.get('KILL_TEST_SEED', random.SystemRandom().randrange(10 ** 6)))


def _outcome(work, weights, logs):
    """sha256 of every weights file and the log lines without time stamps."""
    files = {os.path.relpath(p, work): hashlib.sha256(open(p, 'rb').read()).hexdigest()
             for pattern in weights for p in sorted(glob.glob(os.path.join(work, pattern)))}
    lines = {os.path.relpath(p, work): STAMP.sub('<time>', open(p).read()).splitlines()
             for pattern in logs for p in sorted(glob.glob(os.path.join(work, pattern)))}
    return files, lines


def _run(cmd, work, crash_at=None):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.pop('PRUNING_CRASH_AT', None)
    if crash_at:
        env['PRUNING_CRASH_AT'] = crash_at
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def _killed_then_finished(cmd, work, points):
    """Run `cmd` once per crash point (each must die by SIGKILL), then once to the end."""
    for point in points:
        result = _run(cmd, work, point)
        assert result.returncode == -9, ('not killed at %s (seed %d):\n%s' % (
            point, SEED, (result.stdout + result.stderr)[-3000:]))
    result = _run(cmd, work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _points(rng, train_steps, checkpoints, stages):
    """Three kills at random counts, in the order a run meets them: in a training step, inside a
    checkpoint write (after the variables, before the rename), and between two stages."""
    return ['train_step:%d' % rng.randint(*train_steps),
            'checkpoint_write:%d' % rng.randint(*checkpoints),
            'between_stages:%d' % rng.randint(*stages)]


@pytest.fixture(scope='module')
def aofp_base(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('aofp_base')
    run_script(AOFP, ['train', '--data_dir', synthetic_dir, '--max_epochs', '1'] + AOFP_TINY, work)
    return str(work / 'vc_scratch_savedweights.hdf5')


@pytest.fixture(scope='module')
def aofp_reference(tmp_path_factory, aofp_base, synthetic_dir):
    work = tmp_path_factory.mktemp('aofp_reference')
    shutil.copy(aofp_base, work)
    _run([sys.executable, AOFP] + AOFP_PRUNE + ['--data_dir', synthetic_dir], work)
    outcome = _outcome(str(work), ['bds_exps/*weights.hdf5'], ['*.txt', 'bds_exps/*.txt'])
    assert len(outcome[0]) == 6 and len(outcome[1]['bds_overall_logs.txt']) == 6
    return outcome


def test_prune_killed_three_times_ends_as_never_killed(aofp_base, aofp_reference, synthetic_dir,
                                                       tmp_path):
    shutil.copy(aofp_base, tmp_path)
    points = _points(random.Random(SEED), (2, 12), (1, 3), (1, 3))
    _killed_then_finished([sys.executable, AOFP] + AOFP_PRUNE + ['--data_dir', synthetic_dir],
                          str(tmp_path), points)
    outcome = _outcome(str(tmp_path), ['bds_exps/*weights.hdf5'], ['*.txt', 'bds_exps/*.txt'])
    assert outcome == aofp_reference, 'kills at %s (seed %d)' % (points, SEED)


def test_the_kill_test_fails_when_the_search_state_is_not_restored(aofp_base, aofp_reference,
                                                                   synthetic_dir, tmp_path):
    shutil.copy(aofp_base, tmp_path)
    broken = ('import runpy, sys; from aofp.search import AofpSearch; '
              'AofpSearch.load_state = lambda self, state: None; '
              'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")')
    _killed_then_finished([sys.executable, '-c', broken, AOFP] + AOFP_PRUNE +
                          ['--data_dir', synthetic_dir], str(tmp_path), ['train_step:8'])
    outcome = _outcome(str(tmp_path), ['bds_exps/*weights.hdf5'], ['*.txt', 'bds_exps/*.txt'])
    assert outcome[0] != aofp_reference[0] and outcome[1] != aofp_reference[1]


def test_csgd1_killed_three_times_ends_as_never_killed(tmp_path_factory, synthetic_dir):
    from helpers import random_weights
    from tf_benchmarks.files import hdf5_io
    from tf_benchmarks.models.registry import get_model
    base = tmp_path_factory.mktemp('csgd_base')
    deps = [4] * 13
    hdf5_io.save_hdf5(str(base / 'vc_scratch_savedweights.hdf5'),
                      random_weights(get_model('vc').trace(deps), 0), deps)
    outcomes = []
    for name, points in (('reference', []),
                         ('killed', _points(random.Random(SEED + 1), (3, 25), (1, 2), (1, 1)))):
        work = tmp_path_factory.mktemp(name)
        shutil.copy(base / 'vc_scratch_savedweights.hdf5', work)
        _killed_then_finished([sys.executable, CSGD] + CSGD_RUN + ['--data_dir', synthetic_dir],
                              str(work), points)
        outcomes.append(_outcome(str(work), ['vc_csgd1_*.hdf5', 'vc_csgd1_*.json'],
                                 ['*.txt']))
    assert len(outcomes[0][0]) == 3 and len(outcomes[0][1]['vc_csgd1_important_log.txt']) >= 9
    assert outcomes[1] == outcomes[0], 'kills at %s (seed %d)' % (points, SEED)
