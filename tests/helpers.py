"""Shared test helpers: random weights and images for exactness tests, running a driver script."""

import os
import subprocess
import sys

import numpy as np


def file_tree(path):
    """{relative path: sha256} of every file under `path` (what a refused command must leave)."""
    import hashlib
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, path)] = hashlib.sha256(open(full, 'rb').read()).hexdigest()
    return out


def random_weights(trace, seed):
    """Weights for every variable of a trace, with BN statistics and scales in a sane range."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, info in trace.variables.items():
        if name.endswith('moving_variance'):
            weights[name] = rng.uniform(0.5, 1.5, info.shape)
        elif name.endswith('gamma'):
            weights[name] = rng.uniform(0.5, 1.5, info.shape)
        elif len(info.shape) == 4:
            weights[name] = rng.normal(0, np.sqrt(2.0 / np.prod(info.shape[:3])), info.shape)
        else:
            weights[name] = rng.normal(0, 0.3, info.shape)
    return {n: v.astype(np.float32) for n, v in weights.items()}


def random_images(n=6, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)


def run_script(script, args, cwd, check=True):
    """Run `python script args...` in `cwd` (unbuffered); raise with its output if it fails."""
    result = subprocess.run([sys.executable, script] + list(args), cwd=cwd, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-3000:])
    return result


def run_driver_cases(script, cases):
    """Run a driver on many (cwd, args) command lines in one process (tests/run_cases.py); returns
    one {'code': exit status, 'stdout': text, 'stderr': text} per case."""
    import json
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'run_cases.py')
    result = subprocess.run([sys.executable, runner, script, json.dumps(
        [[str(cwd), list(args)] for cwd, args in cases])], capture_output=True, text=True,
        timeout=600)
    outcomes = [json.loads(l[5:]) for l in result.stdout.splitlines() if l.startswith('CASE ')]
    if len(outcomes) != len(cases):
        raise AssertionError(result.stdout[-2000:] + result.stderr[-3000:])
    return outcomes


def error_lines(stderr):
    """The `error: ` lines a driver wrote (TensorFlow's own start-up lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith('error: ')]


def search_metrics(model, deps, layers, weights, images, **builder_options):
    """AOFP's search metrics of `layers` on `images` with `weights`: (with the first half of every
    layer's filters dropped, with none dropped), from one masked multi-path graph."""
    import tensorflow.compat.v1 as tf
    from aofp.masked_builder import MaskedConvNetBuilder
    with tf.Graph().as_default():
        builder = MaskedConvNetBuilder(tf.constant(images), True, layers, search=True,
                                       **builder_options)
        model.build(builder, deps)
        assert sorted(builder.metrics) == sorted(layers)
        metrics = [builder.metrics[i] for i in layers]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for var_name, var in builder.variables.items():
                var.load(weights[var_name], sess)
            drops = {builder.dropped_filters[i]: np.arange(deps[i] // 2, dtype=np.int32)
                     for i in layers}
            return sess.run(metrics, drops), sess.run(metrics)
