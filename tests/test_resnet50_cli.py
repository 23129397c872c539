"""Both methods on `sres50` through the drivers, on ImageNet-format shards at small size (widths / 8,
16x16 images, a few steps per stage), on two loopback workers that each read their own shard: a
worker killed in a training step, then both resumed, end with equal weights and every file written
once, and AOFP's pruned file computes the tuned (masked) one's numbers. (That a resumed stream of
shards is the one never stopped is tested in test_imagenet_pipeline.py; that a killed run ends with
the same bytes, in test_resume_aofp.py and test_resume_csgd.py.)"""

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import random_weights
from test_replicas import digests
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.input_spec import InputSpec

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
COMMON = ['--model', 'sres50', '--preset', 'smoke', '--image_size', '16', '--batch_size', '8']
PRUNE = ['prune'] + COMMON + ['--itr_schedule', '0.1', '--batches_per_half', '1',
                              '--metric_limit', '10', '--search_max_epochs', '1',
                              '--finetune_epochs', '0.4', '--checkpoint_every', '2']
CSGD1 = ['csgd1'] + COMMON + ['--max_epochs', '1', '--checkpoint_every', '2']
STAMP = re.compile(r'\d{4},[A-Z][a-z]{2},\d{2},\d{2}:\d{2}:\d{2}')


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    """40 training JPEGs (2 shards) and 8 validation ones of 4 classes, about 20 pixels."""
    from datasets import build_imagenet_data as converter
    path = str(tmp_path_factory.mktemp('shards'))
    converter.convert_synthetic(path, 40, 20, 4, seed=1, shards={'train': 2, 'validation': 1})
    return path


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    """A random sres50 base at widths / 8 with 4 logits, for 16x16 inputs."""
    model = get_model('sres50')
    deps = [max(1, d // 8) for d in model.default_deps]
    path = tmp_path_factory.mktemp('base') / 'sres50_scratch_savedweights.hdf5'
    hdf5_io.save_hdf5(str(path), random_weights(model.trace(deps, 4), 0), deps,
                      input_spec=InputSpec(16))
    return path


def _workers(script, args, cwd, worker1_env=None):
    """Start both loopback workers (see test_replicas.run_two_workers); returns a function that
    waits for them and gives [(exit status, output)] of worker 0 and worker 1."""
    import json
    from test_replicas import _free_ports
    cluster = {'worker': ['127.0.0.1:%d' % p for p in _free_ports(2)]}
    procs = []
    for index in (0, 1):
        env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CONFIG=json.dumps(
            {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
        env.pop('PRUNING_CRASH_AT', None)
        if index == 1:
            env.update(worker1_env or {})
        procs.append(subprocess.Popen(
            [sys.executable, script] + list(args) + ['--strategy', 'multi_worker',
                                                     '--worker_timeout', '120'],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return lambda: [(p.wait(timeout=600), p.stdout.read()) for p in procs]


RUNS = {'aofp': (AOFP, PRUNE, 'train_step:3', 'bds_exps/sres50_reproduce_itr0', 3),
        'csgd': (CSGD, CSGD1, 'train_step:3', 'sres50_csgd1_itr0', 2)}


def test_two_workers_killed_once_resume_with_equal_weights(shards, base, tmp_path):
    """Both methods at once, each on two workers reading one shard each: worker 1 is killed in a
    training step, worker 0 stops with one error; run again, both resume from the last checkpoint
    and end with the same weights, every file written once."""
    works = {}
    for method in RUNS:
        works[method] = tmp_path / method
        works[method].mkdir()
        shutil.copy(base, works[method])

    def both(worker1_env=None):
        waits = {m: _workers(script, args + ['--data_dir', shards], works[m],
                             worker1_env and {'PRUNING_CRASH_AT': kill})
                 for m, (script, args, kill, _, _) in RUNS.items()}
        return {m: wait() for m, wait in waits.items()}
    for method, ((code0, out0), (code1, _)) in both(worker1_env=True).items():
        assert code1 == -9 and code0 == 2, (method, out0[-3000:])
        errors = [l for l in out0.splitlines() if l.startswith('error: ')]
        assert len(errors) == 1 and 'another worker stopped' in errors[0], (method, errors)
    for method, ((code0, out0), (code1, out1)) in both().items():
        assert code0 == 0 and code1 == 0, (method, out0[-3000:] + out1[-3000:])
        assert 'resumed from' in out0 and 'resumed from' in out1, method
        assert digests(out0) and digests(out0) == digests(out1), method
        record = (works[method] / 'run.json').read_text()
        assert '"workers": 2' in record
        prefix, files = RUNS[method][3:]
        assert len(glob.glob(str(works[method] / (prefix + '*.hdf5')))) == files, method
    log = (works['aofp'] / 'bds_overall_logs.txt').read_text().splitlines()
    assert len(log) == 3  # tuned, pruned, finetuned: each once
    tuned, pruned, _ = log
    numbers = [[float(x) for x in re.search(r'top1=(\S+),top5=(\S+),loss=(\S+) on', l).groups()]
               for l in (tuned, pruned)]
    assert numbers[0][:2] == numbers[1][:2]  # the pruned file computes the tuned file's numbers
    assert numbers[1][2] == pytest.approx(numbers[0][2], rel=1e-5)
    csgd_log = (works['csgd'] / 'sres50_csgd1_important_log.txt').read_text()
    assert csgd_log.count('C-SGD train completed') == 1
