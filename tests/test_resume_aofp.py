"""A `prune` run killed anywhere ends exactly as one never killed: with --deterministic it is killed
with SIGKILL at random moments (in a training step, inside a checkpoint write, between stages) and
re-run; every hdf5 file and every log line (time stamps aside) equals an uninterrupted run's. With
the search state's loader broken, the same procedure gives different files."""

import random
import shutil
import sys

import pytest

from helpers import run_script
from kill_runs import AOFP, SEED, killed_then_finished, outcome, points, run

AOFP_TINY = ['--preset', 'smoke', '--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8']
AOFP_PRUNE = ['prune', '--deterministic', '--preset', 'smoke', '--itr_schedule', '0.2,0.4',
              '--batches_per_half', '4', '--finetune_epochs', '0.5', '--search_max_epochs', '20',
              '--metric_limit', '10', '--checkpoint_every', '3']
WEIGHTS, LOGS = ['bds_exps/*weights.hdf5'], ['*.txt', 'bds_exps/*.txt']


@pytest.fixture(scope='module')
def aofp_base(tmp_path_factory, synthetic_dir):
    work = tmp_path_factory.mktemp('aofp_base')
    run_script(AOFP, ['train', '--data_dir', synthetic_dir, '--max_epochs', '1'] + AOFP_TINY, work)
    return str(work / 'vc_scratch_savedweights.hdf5')


@pytest.fixture(scope='module')
def aofp_reference(tmp_path_factory, aofp_base, synthetic_dir):
    work = tmp_path_factory.mktemp('aofp_reference')
    shutil.copy(aofp_base, work)
    run([sys.executable, AOFP] + AOFP_PRUNE + ['--data_dir', synthetic_dir], work)
    reference = outcome(str(work), WEIGHTS, LOGS)
    assert len(reference[0]) == 6 and len(reference[1]['bds_overall_logs.txt']) == 6
    return reference


def test_prune_killed_three_times_ends_as_never_killed(aofp_base, aofp_reference, synthetic_dir,
                                                       tmp_path):
    shutil.copy(aofp_base, tmp_path)
    kills = points(random.Random(SEED), (2, 12), (1, 3), (1, 3))
    killed_then_finished([sys.executable, AOFP] + AOFP_PRUNE + ['--data_dir', synthetic_dir],
                         str(tmp_path), kills)
    assert outcome(str(tmp_path), WEIGHTS, LOGS) == aofp_reference, \
        'kills at %s (seed %d)' % (kills, SEED)


def test_the_kill_test_fails_when_the_search_state_is_not_restored(aofp_base, aofp_reference,
                                                                   synthetic_dir, tmp_path):
    shutil.copy(aofp_base, tmp_path)
    broken = ('import runpy, sys; from aofp.search import AofpSearch; '
              'AofpSearch.load_state = lambda self, state: None; '
              'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")')
    killed_then_finished([sys.executable, '-c', broken, AOFP] + AOFP_PRUNE +
                         ['--data_dir', synthetic_dir], str(tmp_path), ['train_step:8'])
    result = outcome(str(tmp_path), WEIGHTS, LOGS)
    assert result[0] != aofp_reference[0] and result[1] != aofp_reference[1]
