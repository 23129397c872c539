"""keras.applications' ResNet50 and MobileNetV2 (weights=None, random weights, 32x32, 10 classes)
through `import-keras` and back through `export-keras`, too large for the test suite (ResNet50's
files are 95 MB): Keras writes them as .keras and .h5 (tests/keras_models.py, a fresh process), the
import's logits are compared with Keras' pre-softmax outputs, then each imported network is pruned
(AOFP masks keeping a random ~60% of every channel group), exported, opened by Keras in a fresh
process and compared with the project's logits of the pruned network. Prints one line per check.

    python bench/keras_applications.py [--work DIR] [--models resnet50,mobilenetv2]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _run(script, args):
    import subprocess
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tests', script)] + args,
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work', default=None, help='directory for the files (default: a new '
                        'temporary one)')
    parser.add_argument('--models', default='resnet50,mobilenetv2')
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix='keras-applications-')
    names = args.models.split(',')
    start = time.time()
    _run('keras_models.py', [work] + names)
    print('keras wrote %s in %.1f s' % (', '.join(names), time.time() - start))

    from tf_benchmarks.engine.session import graph_mode
    graph_mode()
    from tf_benchmarks.deploy.keras_export import export_keras_many, record
    from tf_benchmarks.deploy.keras_import import import_keras
    from tf_benchmarks.engine.evaluation import predict_logits
    from tf_benchmarks.pruning.surgery import remove_masked

    def normalized(spec, pixels):
        return ((pixels - np.float32(spec.mean)) / np.float32(spec.std)).astype(np.float32)

    jobs, expected, loads = [], [], []
    for name in names:
        pixels = np.load(os.path.join(work, name + '_images.npy'))
        reference = np.load(os.path.join(work, name + '_logits.npy'))
        for ext in ('.keras', '.h5'):
            start = time.time()
            net = import_keras(os.path.join(work, name + ext))
            spec = net.model_spec()
            ours = predict_logits(spec, net.default_deps, net.weights,
                                  normalized(net.input_spec, pixels))
            print('%s%s: %d conv layers, %d depthwise, %d classes, max |logit| %.4g, max relative '
                  'difference to Keras %.2e (import + logits %.1f s)'
                  % (name, ext, len(net.default_deps), len(spec.trace().depthwise),
                     net.num_classes, np.abs(reference).max(),
                     np.abs(ours - reference).max() / np.abs(reference).max(),
                     time.time() - start))
        trace = spec.trace()
        rng = np.random.default_rng(0)
        masks = {}
        for group in trace.groups:
            mask = (rng.uniform(size=trace.convs[group.root].out_channels) < 0.6)
            mask[0] = True
            masks[group.root] = mask.astype(np.float32)
        pruned, deps = remove_masked(trace, net.weights, masks)
        out = os.path.join(work, name + '_pruned.keras')
        jobs.append((record(spec, deps, net.num_classes, net.input_spec), pruned, out))
        expected.append((name, sum(deps), sum(net.default_deps),
                         predict_logits(spec, deps, pruned, normalized(net.input_spec, pixels))))
        loads += [out, os.path.join(work, name + '_images.npy')]
    start = time.time()
    export_keras_many(jobs)
    _run('load_keras.py', [os.path.join(work, 'loaded.npz')] + loads)
    outputs = np.load(os.path.join(work, 'loaded.npz'))
    for i, (name, kept, total, ours) in enumerate(expected):
        print('%s pruned to %d of %d filters, exported and loaded by Keras: max relative '
              'difference %.2e (export + load of all: %.1f s)'
              % (name, kept, total, np.abs(outputs['out%d' % i] - ours).max() /
                 np.abs(ours).max(), time.time() - start))


if __name__ == '__main__':
    main()
