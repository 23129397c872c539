"""`--seed` of both drivers: the seeds derived from it (AOFP's drops, C-SGD's k-means), the initial
and trained weights it draws, run.json recording it only when it is not the default, and a resumed
run with another seed refused; the CLI cases run in one process per driver."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from conftest import REPO
from helpers import error_lines, random_weights, run_driver_cases
from aofp import pipeline as aofp_pipeline
from aofp.presets import PRESETS as AOFP_PRESETS
from aofp.search import DROP_SEED
from csgd import pipeline as csgd_pipeline
from csgd.presets import PRESETS as CSGD_PRESETS
from tf_benchmarks.commands import recipe
from tf_benchmarks.engine.train_config import (DEFAULT_SEED, MAX_SEED, TrainConfig,
                                               derived_seed)
from tf_benchmarks.engine.trainer import Trainer
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
TINY = ['--deterministic', '--preset', 'smoke', '--deps', '4,4,8,8,8,8,8,8,8,8,8,8,8']
TRAIN = ['train', '--max_epochs', '0.2'] + TINY       # 2 steps of 64 on the 640 images
CSGD1 = ['csgd1', '--deterministic', '--model', 'vc', '--preset', 'smoke', '--target_deps', '0.5',
         '--max_epochs', '0.2']
BASE = 'vc_scratch_savedweights.hdf5'
STED = 'vc_csgd1_itr0_sted.hdf5'


def test_derived_seeds_keep_the_originals_at_the_default_and_differ_elsewhere():
    assert DEFAULT_SEED == 1234 and MAX_SEED == 2147483647
    assert derived_seed(DEFAULT_SEED, DROP_SEED) == 4321 == DROP_SEED
    assert derived_seed(DEFAULT_SEED, 0) == 0                      # C-SGD's k-means, as before
    assert [derived_seed(s, 0) for s in (0, 1, 7)] == [1234, 1235, 1237]
    assert [derived_seed(s, DROP_SEED) for s in (0, 1, 7)] == [5171, 5170, 5172]
    assert len({derived_seed(s, DROP_SEED) for s in range(4096)}) == 4096
    assert 0 <= derived_seed(MAX_SEED, DROP_SEED) <= MAX_SEED
    settings = CSGD_PRESETS['smoke']['vc']
    assert 'seed' not in recipe.recorded(settings)
    assert csgd_pipeline.kmeans_seed(settings) == 0
    settings.seed = 7
    assert recipe.recorded(settings)['seed'] == 7 and csgd_pipeline.kmeans_seed(settings) == 1237


def test_the_seed_draws_the_initial_weights(synthetic_dir, tmp_path):
    def initial(seed, name):
        config = TrainConfig(num_steps=0, batch_size=16, lr_values=[0.01], seed=seed)
        return Trainer(get_model('vc'), [4] * 13, synthetic_dir, config,
                       str(tmp_path / name)).run().weights
    first, again, other = initial(1, 'a'), initial(1, 'b'), initial(2, 'c')
    kernel = 'v0/cg/conv0/conv2d/kernel'
    assert first[kernel].shape == (3, 3, 3, 4) and np.std(first[kernel]) > 0.05
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    differ = [n for n in first if not np.array_equal(first[n], other[n])]
    assert sorted(n for n in differ if n.endswith('kernel')) == sorted(
        n for n in first if n.endswith('kernel'))  # every conv and FC kernel; zero biases alike


def test_prune_seeds_the_search_drops(synthetic_dir, tmp_path, monkeypatch):
    """The seed that reaches AOFP's search in `prune` (stopped where its training would start)."""
    seen = []

    class Recorded(aofp_pipeline.AofpSearch):
        def __init__(self, *args, seed, **kwargs):
            seen.append(seed)
            super().__init__(*args, seed=seed, **kwargs)

    class Stop(Exception):
        pass

    def trainer(*args, **kwargs):
        raise Stop
    monkeypatch.setattr(aofp_pipeline, 'AofpSearch', Recorded)
    monkeypatch.setattr(aofp_pipeline, 'Trainer', trainer)
    model, deps = get_model('vc'), [4] * 13
    for seed in (DEFAULT_SEED, 7):
        (tmp_path / str(seed)).mkdir()
        monkeypatch.chdir(tmp_path / str(seed))
        hdf5_io.save_hdf5(BASE, random_weights(model.trace(deps), 0), deps)
        settings = dataclasses.replace(AOFP_PRESETS['smoke']['vc'], seed=seed)
        with pytest.raises(Stop):
            aofp_pipeline.AofpPruning(model, settings, synthetic_dir, BASE).run()
    assert seen == [4321, 5172]


def _weights(path):
    return hdf5_io.read_hdf5(str(path)).weights


def _same(a, b):
    return all(np.array_equal(a[n], b[n]) for n in a) and set(a) == set(b)


def _settings(work, stage):
    return json.loads((work / 'run.json').read_text())['stages'][stage]['settings']


def test_seed_through_both_drivers_recorded_and_checked_on_resume(synthetic_dir, tmp_path):
    data = ['--data_dir', synthetic_dir]
    dirs = {name: tmp_path / name for name in 'abcdefg'}
    for path in dirs.values():
        path.mkdir()
    a, b, c, d, e, f, g = dirs.values()
    outcomes = run_driver_cases(AOFP, [
        (a, TRAIN + data), (b, TRAIN + data + ['--seed', '1234']),
        (c, TRAIN + data + ['--seed', '7']), (d, TRAIN + data + ['--seed', '7']),
        (c, TRAIN + data + ['--seed', '8']), (c, TRAIN + data), (a, TRAIN + data + ['--seed', '7']),
        (e, TRAIN + data + ['--seed', '-1']), (e, TRAIN + data + ['--seed', '2147483648'])])
    assert [o['code'] for o in outcomes] == [0, 0, 0, 0, 2, 2, 2, 2, 2], outcomes
    refusals = [error_lines(o['stderr']) for o in outcomes[4:]]
    assert all(len(lines) == 1 for lines in refusals), refusals
    assert 'train: seed was 7, now 8' in outcomes[4]['stderr']
    assert 'train: seed was 7, now "(not set)"' in outcomes[5]['stderr']
    assert 'train: seed was "(not set)", now 7' in outcomes[6]['stderr']
    for o in outcomes[4:7]:
        assert '--restart_from train' in o['stderr']
    for o, value in zip(outcomes[7:], ('-1', '2147483648')):
        assert error_lines(o['stderr']) == [
            'error: --seed must be an integer from 0 to 2147483647 (31 bits), got ' + value]
    assert not (e / 'run.json').exists()
    base = {k: _weights(dirs[k] / BASE) for k in 'abcd'}
    assert _same(base['a'], base['b']) and _same(base['c'], base['d'])
    assert not _same(base['a'], base['c'])
    assert 'seed' not in _settings(a, 'train') and 'seed' not in _settings(b, 'train')
    assert _settings(c, 'train')['seed'] == 7
    assert (a / 'run.json').read_text().count('"seed"') == 0

    # C-SGD from one base: its training (and k-means' seed) follow --seed
    for work in (f, g):
        shutil.copy(a / BASE, work / BASE)
    outcomes = run_driver_cases(CSGD, [
        (f, CSGD1 + data), (g, CSGD1 + data + ['--seed', '7']),
        (g, CSGD1 + data + ['--seed', '8'])])
    assert [o['code'] for o in outcomes] == [0, 0, 2], outcomes
    assert len(error_lines(outcomes[2]['stderr'])) == 1
    assert 'csgd1.itr0.clusters: kmeans_seed was 1237, now 1242' in outcomes[2]['stderr']
    assert 'csgd1.itr0.clusters: seed was 7, now 8' in outcomes[2]['stderr']
    assert not _same(_weights(f / STED), _weights(g / STED))
    clusters, train = _settings(f, 'csgd1.itr0.clusters'), _settings(f, 'csgd1.itr0.train')
    assert clusters['kmeans_seed'] == 0 and 'seed' not in clusters and 'seed' not in train
    clusters, train = _settings(g, 'csgd1.itr0.clusters'), _settings(g, 'csgd1.itr0.train')
    assert (clusters['kmeans_seed'], clusters['seed'], train['seed']) == (1237, 7, 7)
