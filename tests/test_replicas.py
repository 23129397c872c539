"""tf.distribute scale-out: one mirrored step on two logical CPU devices (fp32, C-SGD, fp16 with
loss scaling) against the single-device update from the mean of the half-batch gradients; TF_CONFIG
parsing; two workers on the loopback interface running C-SGD and an AOFP search (one killed and
resumed), with identical weights on both and every file written once."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import REPO
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.replicas import cluster_from_tf_config

HERE = os.path.dirname(os.path.abspath(__file__))


def test_one_mirrored_step_is_the_update_of_the_mean_gradient():
    result = subprocess.run([sys.executable, os.path.join(HERE, 'mirrored_step.py'), 'plain',
                             'csgd', 'fp16'], cwd=HERE, capture_output=True, text=True, timeout=300)
    lines = [l for l in result.stdout.splitlines() if l.startswith('RESULT ')]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    errors = json.loads(lines[0][len('RESULT '):])
    # plain: L2 in the trainer; csgd: the centripetal handler; fp16: float16 convolutions and a
    # loss scale of 2**10 (the gradients unscaled once)
    for case in ('plain', 'csgd', 'fp16'):
        e = errors[case]
        assert e['mean_of_weights'] < 1e-5, (case, e)
        assert e['mean'] < 1e-4, (case, e)           # relative to the size of the update itself
        assert e['sum'] > 0.1 and e['per_replica'] > 0.1, (case, e)  # the test can tell


@pytest.mark.parametrize('text, message', [
    ('', 'needs TF_CONFIG'),
    ('{"cluster": ', 'not a TensorFlow cluster description'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', 'not in its cluster'),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}',
     'is not host:port'),
])
def test_tf_config_errors(text, message):
    with pytest.raises(UserError, match=message):
        cluster_from_tf_config(text)


def test_tf_config_with_a_chief():
    cluster, kind, index = cluster_from_tf_config(json.dumps(
        {'cluster': {'chief': ['h:1'], 'worker': ['h:2']}, 'task': {'type': 'worker', 'index': 0}}))
    assert (kind, index) == ('worker', 0) and cluster['chief'] == ['h:1']


# -- two workers on the loopback interface ----------------------------------------------------------
TINY_VC = [4] * 13


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(script, args, cwd, worker1_env=None, timeout=300):
    """Both workers of a loopback cluster, each `python script args --strategy multi_worker` in
    `cwd` with its TF_CONFIG; returns [(exit status, output)] of worker 0 and worker 1."""
    cluster = {'worker': ['127.0.0.1:%d' % p for p in _free_ports(2)]}
    procs = []
    for index in (1, 0):
        env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CONFIG=json.dumps(
            {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
        if index == 1:
            env.update(worker1_env or {})
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, script)] + list(args) +
            ['--strategy', 'multi_worker', '--worker_timeout', '120'], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(procs[1].returncode, outputs[1]), (procs[0].returncode, outputs[0])]


def digests(output):
    """{(stage order, step): sha256} from a worker's 'weights sha256' lines."""
    found = re.findall(r'^worker \d: weights sha256 ([0-9a-f]{64}) at step (\d+)$', output, re.M)
    return [(int(step), digest) for digest, step in found]


@pytest.fixture(scope='module')
def tiny_base(tmp_path_factory):
    """A tiny vc base (random weights with sane BN statistics) for both methods."""
    from helpers import random_weights
    from tf_benchmarks.files import hdf5_io
    from tf_benchmarks.models.registry import get_model
    path = tmp_path_factory.mktemp('base') / 'vc_scratch_savedweights.hdf5'
    hdf5_io.save_hdf5(str(path), random_weights(get_model('vc').trace(TINY_VC), 0), TINY_VC)
    return path


def test_two_workers_csgd_same_weights_files_written_once(tiny_base, synthetic_dir, tmp_path):
    from tf_benchmarks.files import hdf5_io
    from tf_benchmarks.engine.weights import weights_digest
    os.symlink(tiny_base, tmp_path / 'vc_scratch_savedweights.hdf5')
    (code0, out0), (code1, out1) = run_two_workers(
        'csgd/csgd_standalone.py', ['csgd1', '--model', 'vc', '--preset', 'smoke', '--data_dir',
                                    synthetic_dir, '--target_deps', '0.5', '--max_epochs', '0.5'],
        tmp_path)
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    assert digests(out0) and digests(out0) == [(s, d) for s, d in digests(out1)], (out0, out1)
    sted = hdf5_io.read_hdf5(str(tmp_path / 'vc_csgd1_itr0_sted.hdf5'))
    assert weights_digest(sted.weights) == digests(out0)[0][1]  # the file holds those weights
    assert 'worker: stage csgd1.itr0.train' in out1
    log = (tmp_path / 'vc_csgd1_important_log.txt').read_text()
    assert log.count('C-SGD train completed') == 1 and log.count('eval after trimming') == 1
    record = json.loads((tmp_path / 'run.json').read_text())
    assert [c['argv'][1] for c in record['commands']] == ['csgd1']
    events = [n for n in os.listdir(tmp_path / 'vc_csgd1_itr0_train') if 'tfevents' in n]
    assert len(events) == 1


def test_two_workers_aofp_search_worker_killed_then_resumed(tiny_base, synthetic_dir, tmp_path):
    os.symlink(tiny_base, tmp_path / 'vc_scratch_savedweights.hdf5')
    args = ['prune', '--data_dir', synthetic_dir, '--metric_limit', '0', '--preset', 'smoke',
            '--itr_schedule', '0.25', '--batches_per_half', '4', '--finetune_epochs', '0.25',
            '--search_max_epochs', '3', '--checkpoint_every', '10']
    (code0, out0), (code1, _) = run_two_workers('aofp/aofp_standalone.py', args, tmp_path,
                                                {'PRUNING_CRASH_AT': 'train_step:25'})
    assert code1 == -9 and code0 == 2, out0[-3000:]
    errors = [l for l in out0.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and 'another worker stopped' in errors[0], out0[-3000:]
    assert not (tmp_path / 'bds_exps' / 'vc_reproduce_itr0_tunedweights.hdf5').exists()
    (code0, out0), (code1, out1) = run_two_workers('aofp/aofp_standalone.py', args, tmp_path)
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    for out in (out0, out1):
        assert 'resumed from bds_exps/vc_reproduce_itr0_train at step 20' in out
    assert len(digests(out0)) == 2 and digests(out0) == digests(out1)
    assert len((tmp_path / 'bds_overall_logs.txt').read_text().splitlines()) == 3
