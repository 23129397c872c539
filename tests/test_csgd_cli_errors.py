"""`python csgd/csgd_standalone.py` refuses what it cannot run with one clear error and no
traceback: an unknown mode, csgd1 without a base model, and another architecture's weights (in
`magnitude1 --init_hdf5` and `eval`); the cases run in one driver process."""

import os

import numpy as np

from conftest import REPO
from helpers import run_driver_cases
from tf_benchmarks.files import hdf5_io

SCRIPT = os.path.join(REPO, 'csgd', 'csgd_standalone.py')


def test_bad_input_gives_one_clear_error(tmp_path, synthetic_dir):
    hdf5_io.save_hdf5(str(tmp_path / 'vc.hdf5'), {'v0/cg/conv0/conv2d/kernel': np.zeros(3)},
                      deps=[64] * 13)
    outcomes = run_driver_cases(SCRIPT, [
        (tmp_path, ['prune']),
        (tmp_path, ['csgd1', '--data_dir', synthetic_dir]),
        (tmp_path, ['magnitude1', '--data_dir', synthetic_dir, '--init_hdf5', 'vc.hdf5']),
        (tmp_path, ['eval', 'vc.hdf5', '--data_dir', synthetic_dir])])
    expected = ['error: unknown mode', 'run `csgd_standalone.py train --model dc40` first',
                'another architecture', 'another architecture']
    for outcome, message in zip(outcomes, expected):
        assert outcome['code'] == 2 and message in outcome['stderr'], outcome
        assert 'Traceback' not in outcome['stderr']
