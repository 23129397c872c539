"""The working directory of a run: one command at a time (the lock, with real concurrent driver
processes and stale locks taken over), run.json and results.json as untrusted input (paths outside
the directory, malformed files, C-SGD mode names), and nothing left behind by a failed start or
write (data of the wrong image size, a run.json that cannot be written)."""

import io
import json
import os
import resource
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from helpers import error_lines, random_weights
from test_bad_inputs import AOFP, CSGD, DC_FLAGS, DC_TINY, VC_FLAGS, VC_TINY, _tree
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.runs.lock import LOCK_FILE, RunLock

HOST = socket.gethostname()


def _dead_pid():
    process = subprocess.Popen(['true'])
    process.wait()
    return process.pid


def _write_lock(directory, host, pid, age_s):
    (directory / LOCK_FILE).write_text(json.dumps({'host': host, 'pid': pid,
                                                   'heartbeat': time.time() - age_s}))


# -- the lock alone --------------------------------------------------------------------------------
def test_a_held_lock_refuses_a_second_command_and_is_released_on_ctrl_c(tmp_path):
    lines = []
    with pytest.raises(KeyboardInterrupt):
        with RunLock(str(tmp_path), heartbeat_s=0.05):
            first = json.loads((tmp_path / LOCK_FILE).read_text())
            assert first['host'] == HOST and first['pid'] == os.getpid()
            time.sleep(0.3)  # the heartbeat thread refreshes the time
            assert json.loads((tmp_path / LOCK_FILE).read_text())['heartbeat'] > first['heartbeat']
            with pytest.raises(UserError, match='host %s, PID %d' % (HOST, os.getpid())):
                RunLock(str(tmp_path), log=lines.append).acquire()
            raise KeyboardInterrupt
    assert not (tmp_path / LOCK_FILE).exists() and lines == []


def test_stale_locks_are_taken_over_and_live_ones_kept(tmp_path):
    lines = []
    _write_lock(tmp_path, 'elsewhere.example', 4242, age_s=10)  # a fresh heartbeat: running
    with pytest.raises(UserError, match='host elsewhere.example, PID 4242'):
        RunLock(str(tmp_path), log=lines.append).acquire()
    (tmp_path / LOCK_FILE).write_text('')  # a lock being written, or garbage
    with pytest.raises(UserError, match='a command that is starting'):
        RunLock(str(tmp_path), log=lines.append).acquire()
    old = time.time() - 3600
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with RunLock(str(tmp_path), log=lines.append):
        pass
    assert len(lines) == 1 and 'unreadable and 3600 s old' in lines[0]
    assert not (tmp_path / LOCK_FILE).exists()


# -- the drivers, in batches -----------------------------------------------------------------------
def _start_cases(script, cases, file_size_limit=None):
    """tests/run_cases.py on (cwd, args) cases, started in the background (optionally with a file
    size limit: a write beyond it fails with EFBIG, like a full disk)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'tests', 'run_cases.py'), script,
         json.dumps([[str(cwd), list(args)] for cwd, args in cases])], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=limit if file_size_limit else None)


def _outcomes(process, n):
    out, err = process.communicate(timeout=600)
    outcomes = [json.loads(l[5:]) for l in out.splitlines() if l.startswith('CASE ')]
    assert len(outcomes) == n, out[-2000:] + err[-3000:]
    return outcomes


def _one_error(outcome, expected):
    assert outcome['code'] == 2, outcome
    assert len(error_lines(outcome['stderr'])) == 1, outcome['stderr']
    assert expected in outcome['stderr'], outcome['stderr']
    assert 'Traceback' not in outcome['stderr']


def _png(size, seed):
    from PIL import Image
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='PNG')
    return buffer.getvalue()


def _data_of_size(directory, size, n=70):
    """A data directory in the slim format whose images are size x size."""
    import tensorflow as tf
    from tf_benchmarks.data import records
    os.makedirs(directory)
    for name in ('cifar10_train.tfrecord', 'cifar10_test.tfrecord'):
        with tf.io.TFRecordWriter(str(directory / name)) as writer:
            for i in range(n):
                writer.write(records.image_to_tfexample(_png(size, i), i % 10, size,
                                                        size).SerializeToString())
    return str(directory)


def _dirs(root, names):
    out = {}
    for name in names:
        out[name] = root / name
        os.makedirs(out[name])
    return out


def _crafted_record(outputs, work_dirs):
    return json.dumps({'commands': [], 'stages': {'train': {
        'settings': {}, 'status': 'done', 'outputs': outputs, 'planned_outputs': [],
        'work_dirs': work_dirs}}})


def _aofp_cases(tmp_path, synthetic_dir, busy):
    """(name, cwd, args) of the AOFP batch; every case must end with exit status 2."""
    d = _dirs(tmp_path, ['outside', 'dotdot', 'link', 'not_json', 'list', 'types', 'missing',
                         'results_types', 'results_name', 'dead_pid', 'old_heartbeat', 'size64',
                         'full'])
    outside = d['outside']
    (outside / 'victim.txt').write_text('keep me\n')
    os.makedirs(outside / 'victim_dir')
    (outside / 'victim_dir' / 'weights.hdf5').write_text('keep me too\n')
    (d['dotdot'] / 'run.json').write_text(_crafted_record(
        {'../outside/victim.txt': '0' * 64}, [str(outside / 'victim_dir')]))
    os.symlink(str(outside), str(d['link'] / 'elsewhere'))
    (d['link'] / 'run.json').write_text(_crafted_record({}, ['elsewhere/victim_dir']))
    (d['not_json'] / 'run.json').write_text('{"stages": {')
    (d['list'] / 'run.json').write_text('[1, 2]')
    (d['types'] / 'run.json').write_text(_crafted_record({'vc_scratch_savedweights.hdf5': 5}, []))
    (d['missing'] / 'run.json').write_text('{"commands": [], "stages": {"train": {"status": '
                                           '"done"}}}')
    (d['results_types'] / 'results.json').write_text(
        '{"format": "results-v1", "runs": {"prune": {"method": "aofp"}}}')
    run = {'method': 'aofp', 'model': 'vc', 'base': {'file': 'b.hdf5', 'widths': [4]},
           'iterations': [{'iteration': 0, 'tuned': {'file': 't.hdf5', 'widths': [2],
                                                     'flops_removed': 0.3, 'top1': 0.5}}]}
    (d['results_name'] / 'results.json').write_text(json.dumps(
        {'format': 'results-v1', 'runs': {'../../evil': run}}))
    _write_lock(d['dead_pid'], HOST, _dead_pid(), age_s=0)
    _write_lock(d['old_heartbeat'], 'elsewhere.example', 4242, age_s=3600)
    vc = get_model('vc')
    hdf5_io.save_hdf5(str(d['size64'] / 'vc.hdf5'), random_weights(vc.trace(VC_TINY), 0), VC_TINY)
    (d['full'] / 'run.json.tmp-424242').write_text('{"left by a killed run')
    data = ['--data_dir', synthetic_dir]
    train = ['train', '--max_epochs', '0.1'] + VC_FLAGS + data
    return d, [
        ('lock', busy, ['train'] + VC_FLAGS + data),
        ('dotdot', d['dotdot'], train + ['--restart_from', 'train']),
        ('link', d['link'], train + ['--restart_from', 'train']),
        ('not_json', d['not_json'], train),
        ('list', d['list'], train),
        ('types', d['types'], train),
        ('missing', d['missing'], train),
        ('results_types', d['results_types'], ['report']),
        ('results_name', d['results_name'], ['report']),
        ('dead_pid', d['dead_pid'], ['report']),
        ('old_heartbeat', d['old_heartbeat'], ['report']),
        ('size64', d['size64'], ['prune', '--base_weights', 'vc.hdf5', '--data_dir',
                                 _data_of_size(tmp_path / 'd64', 64), '--preset', 'smoke']),
        ('full', d['full'], train),
    ]


def _csgd_cases(tmp_path, synthetic_dir):
    d = _dirs(tmp_path, ['csgd_outside', 'csgd_name', 'csgd_size', 'size28'])
    os.makedirs(d['csgd_name'] / 'dc40_')  # so that dc40_/../../csgd_outside/... resolves
    dc40 = get_model('dc40')
    weights = str(tmp_path / 'dc40.hdf5')
    hdf5_io.save_hdf5(weights, random_weights(dc40.trace(DC_TINY), 0), DC_TINY)
    flags = ['--init_hdf5', weights, '--target_deps', '1-1-1'] + DC_FLAGS
    return d, [
        ('csgd_name', d['csgd_name'], ['/../../csgd_outside/csgd1', '--data_dir', synthetic_dir]
         + flags),
        ('csgd_size', d['csgd_size'], ['csgd1', '--data_dir', str(tmp_path / 'd28')] + flags),
        ('size28', d['size28'], ['train', '--data_dir', str(tmp_path / 'd28')] + DC_FLAGS),
    ]


def _wait_for(path, process, timeout_s=60):
    start = time.time()
    while not os.path.exists(path):
        assert process.poll() is None and time.time() - start < timeout_s, process.communicate()
        time.sleep(0.05)


def test_the_working_directory_end_to_end(tmp_path, synthetic_dir):
    busy, pause = tmp_path / 'busy', tmp_path / 'hold_the_first_command'
    os.makedirs(busy)
    pause.write_text('the first command waits, holding its lock, while this file exists\n')
    first = subprocess.Popen([sys.executable, AOFP, 'train', '--max_epochs', '0.5',
                              '--data_dir', synthetic_dir] + VC_FLAGS, cwd=busy,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PRUNING_PAUSE_AT='locked:%s' % pause))
    d, aofp_cases = _aofp_cases(tmp_path, synthetic_dir, busy)
    _data_of_size(tmp_path / 'd28', 28)
    c, csgd_cases = _csgd_cases(tmp_path, synthetic_dir)
    trees = {name: _tree(cwd) for name, cwd, _ in aofp_cases + csgd_cases
             if name not in ('lock', 'dead_pid', 'old_heartbeat', 'full')}
    outside = {name: _tree(tmp_path / name) for name in ('outside', 'csgd_outside')}
    csgd = _start_cases(CSGD, [(cwd, args) for _, cwd, args in csgd_cases])
    _wait_for(busy / LOCK_FILE, first)
    # (under a file size limit for the run.json write of `full`; the others write nothing)
    aofp = _start_cases(AOFP, [(cwd, args) for _, cwd, args in aofp_cases], file_size_limit=500)
    results = dict(zip([n for n, _, _ in aofp_cases], _outcomes(aofp, len(aofp_cases))))
    os.remove(pause)
    results.update(zip([n for n, _, _ in csgd_cases], _outcomes(csgd, len(csgd_cases))))

    # one command per directory: the second names the first; the first ends well, recorded once
    _one_error(results['lock'], 'another command is running in this directory (host %s, PID %d'
               % (HOST, first.pid))
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    assert len(json.load(open(busy / 'run.json'))['commands']) == 1
    assert not (busy / LOCK_FILE).exists()
    # stale locks: taken over with a line saying so (then report's own error; the lock released)
    for name, reason in (('dead_pid', 'on this host no longer exists'),
                         ('old_heartbeat', 'heartbeat from host elsewhere.example (PID 4242) is')):
        _one_error(results[name], 'has no results.json')
        assert 'taking over the lock' in results[name]['stdout'] and \
            reason in results[name]['stdout'], results[name]['stdout']
        assert not (d[name] / LOCK_FILE).exists()

    # run.json naming paths outside its directory: refused, nothing touched anywhere
    for name, expected in (('dotdot', "names '../outside/victim.txt' as the output of stage train"),
                           ('link', 'a symbolic link leads it to %s' % (tmp_path / 'outside'))):
        _one_error(results[name], expected)
    assert _tree(tmp_path / 'outside') == outside['outside']
    # malformed run.json / results.json: one error naming the file and the way out
    for name in ('not_json', 'list', 'types', 'missing'):
        _one_error(results[name], '%s is not a run record of this project' % (d[name] / 'run.json'))
        assert 'move it away' in results[name]['stderr']
    for name, expected in (('results_types', "run 'prune'.model is NoneType"),
                           ('results_name', "run '../../evil': a run name is part of")):
        _one_error(results[name], '%s is not a results file' % (d[name] / 'results.json'))
        assert expected in results[name]['stderr'], results[name]['stderr']
    # a C-SGD mode name is one path component
    _one_error(results['csgd_name'], 'a mode name is part of its file names')
    assert _tree(tmp_path / 'csgd_outside') == outside['csgd_outside']
    # data of the wrong image size: stopped before run.json or any train directory
    _one_error(results['size28'], 'cifar10_train.tfrecord holds 28x28 images; CIFAR-10 images are '
                                  '32x32')
    _one_error(results['size64'], 'holds 64x64 images')
    _one_error(results['csgd_size'], 'holds 28x28 images')
    for name in trees:
        assert _tree(tmp_path / name) == trees[name], name
    # a run.json that cannot be written: its full path named, no temporary left (nor an old one)
    _one_error(results['full'], 'cannot write %s (File too large)' % (d['full'] / 'run.json'))
    assert not [f for f in os.listdir(d['full']) if '.tmp-' in f or f == LOCK_FILE]
