"""A `csgd1` run killed anywhere ends exactly as one never killed: with --deterministic it is killed
with SIGKILL at random moments (in a training step, inside a checkpoint write, between stages) and
re-run; every hdf5 and clusters file and every log line (time stamps aside) equals an uninterrupted
run's."""

import random
import shutil
import sys

from helpers import random_weights
from kill_runs import CSGD, SEED, killed_then_finished, outcome, points
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model

CSGD_RUN = ['csgd1', '--deterministic', '--model', 'vc', '--preset', 'smoke', '--batch_size', '16',
            '--max_epochs', '1', '--target_deps', '0.5', '--checkpoint_every', '7']


def test_csgd1_killed_three_times_ends_as_never_killed(tmp_path_factory, synthetic_dir):
    base = tmp_path_factory.mktemp('csgd_base')
    deps = [4] * 13
    hdf5_io.save_hdf5(str(base / 'vc_scratch_savedweights.hdf5'),
                      random_weights(get_model('vc').trace(deps), 0), deps)
    outcomes = []
    for name, kills in (('reference', []),
                        ('killed', points(random.Random(SEED + 1), (3, 25), (1, 2), (1, 1)))):
        work = tmp_path_factory.mktemp(name)
        shutil.copy(base / 'vc_scratch_savedweights.hdf5', work)
        killed_then_finished([sys.executable, CSGD] + CSGD_RUN + ['--data_dir', synthetic_dir],
                             str(work), kills)
        outcomes.append(outcome(str(work), ['vc_csgd1_*.hdf5', 'vc_csgd1_*.json'], ['*.txt']))
    assert len(outcomes[0][0]) == 3 and len(outcomes[0][1]['vc_csgd1_important_log.txt']) >= 9
    assert outcomes[1] == outcomes[0], 'kills at %s (seed %d)' % (kills, SEED)
