"""Inference speed of exported models: the full `vc` and a pruned `vc` (-65.8% FLOPs, the widths of
an AOFP prune at that ratio), each as the SavedModel and the TFLite file `export --tflite` writes,
at batch 1 (latency per image: median and 95th percentile) and batch 64 (images/s).

    python bench/inference_latency.py                 # 3 rounds, about 3 minutes on 2 cores
    python bench/inference_latency.py --rounds 5 --json inference.json

The weights are random (speed does not depend on their values); the files are made with the
`aofp_standalone.py export --tflite` command. Every measurement runs in its own fresh process
(TensorFlow 2 in eager mode, as a deployment would load the files: `tf.saved_model.load` and its
serving signature, the TFLite interpreter's signature runner with one thread per core); the four
measurements alternate within each round and the table shows the medians over the rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PRUNED_VC = (40, 40, 72, 80, 152, 152, 152, 288, 288, 288, 256, 256, 256)
RUNTIMES = ('savedmodel', 'tflite')


def _prepare(work):
    """Random-weight hdf5 files of the full and the pruned vc, exported by the driver."""
    from tests.helpers import random_weights
    from tf_benchmarks.files import hdf5_io
    from tf_benchmarks.models.registry import get_model
    vc = get_model('vc')
    for name, deps in (('full', vc.default_deps), ('pruned', PRUNED_VC)):
        path = os.path.join(work, 'vc_%s.hdf5' % name)
        hdf5_io.save_hdf5(path, random_weights(vc.trace(deps), 0), deps)
        subprocess.run([sys.executable, os.path.join(REPO, 'aofp', 'aofp_standalone.py'),
                        'export', path, '--out', os.path.join(work, name), '--tflite'],
                       check=True, cwd=work)


def _measure(directory, runtime, single_runs, batch_runs):
    """One worker: latencies of batch-1 calls (ms) and seconds per batch-64 call."""
    import numpy as np
    from tf_benchmarks.core.tf_startup import import_tensorflow
    import_tensorflow()
    import tensorflow as tf
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    batch = rng.integers(0, 256, (64, 32, 32, 3)).astype(np.uint8)
    if runtime == 'savedmodel':
        serving = tf.saved_model.load(directory).signatures['serving_default']

        def run(images):
            return serving(images=tf.constant(images))['logits'].numpy()
    else:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            interpreter = tf.lite.Interpreter(os.path.join(directory, 'model.tflite'),
                                              num_threads=os.cpu_count())
        runner = interpreter.get_signature_runner('serving_default')

        def run(images):
            return runner(images=images)['logits']
    timings = {}
    for images, runs, key in ((one, single_runs, 'batch1_s'), (batch, batch_runs, 'batch64_s')):
        for _ in range(max(3, runs // 10)):  # warm-up, and the interpreter's resize
            run(images)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(images)
            times.append(time.perf_counter() - start)
        timings[key] = times
    print('RESULT ' + json.dumps(timings))


def _worker(directory, runtime, args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--measure', directory,
                          '--runtime', runtime, '--single_runs', str(args.single_runs),
                          '--batch_runs', str(args.batch_runs)], capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    return json.loads(lines[-1][7:])


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--single_runs', type=int, default=300, help='batch-1 calls per worker')
    parser.add_argument('--batch_runs', type=int, default=20, help='batch-64 calls per worker')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--measure', help=argparse.SUPPRESS)
    parser.add_argument('--runtime', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return _measure(args.measure, args.runtime, args.single_runs, args.batch_runs)
    with tempfile.TemporaryDirectory() as work:
        print('exporting the full and the pruned vc ...', flush=True)
        _prepare(work)
        rounds = {(m, r): [] for m in ('full', 'pruned') for r in RUNTIMES}
        for k in range(args.rounds):
            for (model, runtime), runs in rounds.items():
                timings = _worker(os.path.join(work, model), runtime, args)
                runs.append(dict(
                    batch1_median_ms=1000 * statistics.median(timings['batch1_s']),
                    batch1_p95_ms=1000 * _percentile(timings['batch1_s'], 0.95),
                    batch64_images_per_s=64 / statistics.median(timings['batch64_s'])))
                print('round %d %-6s %-10s %s' % (k + 1, model, runtime, json.dumps(
                    {key: round(v, 2) for key, v in runs[-1].items()})), flush=True)
    table = {}
    print('\n| model | runtime | batch 1 median (ms) | batch 1 p95 (ms) | batch 64 (images/s) |')
    print('|---|---|---|---|---|')
    for (model, runtime), runs in rounds.items():
        row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        table['%s/%s' % (model, runtime)] = row
        print('| %s | %s | %.2f | %.2f | %.0f |' % (model, runtime, row['batch1_median_ms'],
                                                   row['batch1_p95_ms'],
                                                   row['batch64_images_per_s']))
    for runtime in RUNTIMES:
        full, pruned = table['full/' + runtime], table['pruned/' + runtime]
        print('%s: pruned vs full, batch 1 %.2fx faster (median), batch 64 %.2fx the images/s'
              % (runtime, full['batch1_median_ms'] / pruned['batch1_median_ms'],
                 pruned['batch64_images_per_s'] / full['batch64_images_per_s']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(rounds=args.rounds, results=table), f, indent=1)


if __name__ == '__main__':
    main()
