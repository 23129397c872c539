"""Kill-and-resume helpers shared by tests/test_resume_aofp.py and test_resume_csgd.py: run a
command killed with SIGKILL at crash points, then to the end, and compare the outcome (sha256 of
weight files, log lines without time stamps)."""

import glob
import hashlib
import os
import random
import re
import subprocess

from conftest import REPO

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
STAMP = re.compile(r'\d{4},[A-Z][a-z]{2},\d{2},\d{2}:\d{2}:\d{2}')
SEED = int(os.environ.get('KILL_TEST_SEED', random.SystemRandom().randrange(10 ** 6)))


def outcome(work, weights, logs):
    """sha256 of every weights file and the log lines without time stamps."""
    files = {os.path.relpath(p, work): hashlib.sha256(open(p, 'rb').read()).hexdigest()
             for pattern in weights for p in sorted(glob.glob(os.path.join(work, pattern)))}
    lines = {os.path.relpath(p, work): STAMP.sub('<time>', open(p).read()).splitlines()
             for pattern in logs for p in sorted(glob.glob(os.path.join(work, pattern)))}
    return files, lines


def run(cmd, work, crash_at=None):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env.pop('PRUNING_CRASH_AT', None)
    if crash_at:
        env['PRUNING_CRASH_AT'] = crash_at
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def killed_then_finished(cmd, work, points):
    """Run `cmd` once per crash point (each must die by SIGKILL), then once to the end."""
    for point in points:
        result = run(cmd, work, point)
        assert result.returncode == -9, ('not killed at %s (seed %d):\n%s' % (
            point, SEED, (result.stdout + result.stderr)[-3000:]))
    result = run(cmd, work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def points(rng, train_steps, checkpoints, stages):
    """Three kills at random counts, in the order a run meets them: in a training step, inside a
    checkpoint write (after the variables, before the rename), and between two stages."""
    return ['train_step:%d' % rng.randint(*train_steps),
            'checkpoint_write:%d' % rng.randint(*checkpoints),
            'between_stages:%d' % rng.randint(*stages)]


