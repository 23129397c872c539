"""Training throughput (images/s) of this project's graph-mode trainer against the same architecture
in Keras 3 `model.fit`, in one invocation: runs alternate between the two, each in its own worker
process (Keras 3 needs eager TF2, the trainer uses v1 graph mode), and the ratios are printed.

    python bench/train_throughput.py                       # vc and dc40, batch 64, 3 rounds
    python bench/train_throughput.py --models vc --rounds 1 --steps 20

Every run trains on one fixed in-memory batch (no input pipeline cost), NHWC, fp32, Nesterov
momentum 0.9, L2 1e-4 on kernels, BN decay 0.9 / eps 1e-3; the first `--warmup` steps are not timed.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FRAMEWORKS = ('ours', 'keras', 'torch')


def _result(images_per_sec):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('RESULT ' + json.dumps({'images_per_sec': images_per_sec, 'peak_rss_mb': peak}))


# -- this project -------------------------------------------------------------------------------------
def run_ours(args):
    import tempfile
    from tf_benchmarks.input_pipeline import InMemoryBatch
    from tf_benchmarks.models import get_model
    from tf_benchmarks.trainer import TrainConfig, TrainHook, Trainer

    class Timer(TrainHook):
        times = []

        def after_step(self, step, values):
            self.times.append(time.perf_counter())

    config = TrainConfig(num_steps=args.warmup + args.steps, batch_size=args.batch_size,
                         lr_values=[0.01], display_every=10 ** 9, summary_every=0,
                         checkpoint_every=0, checkpoint_secs=float('inf'))
    timer = Timer()
    with tempfile.TemporaryDirectory() as train_dir:
        model = get_model(args.model)
        Trainer(model, model.default_deps, InMemoryBatch(), config, train_dir, hooks=[timer],
                log=lambda *_: None).run()
    t = timer.times
    _result(args.steps * args.batch_size / (t[-1] - t[args.warmup - 1]))


# -- Keras 3 --------------------------------------------------------------------------------------
def keras_model(name):
    import keras
    from keras import layers
    from tf_benchmarks.models import get_model
    reg = keras.regularizers.L2(0.5e-4)  # Keras L2 is l2*sum(w^2): same as 1e-4 * l2_loss
    bn = dict(momentum=0.9, epsilon=1e-3)
    inputs = keras.Input((32, 32, 3))
    if name == 'vc':
        from tf_benchmarks.models.vc_model import POOL_AFTER
        x = inputs
        for i, width in enumerate(get_model('vc').default_deps):
            x = layers.Conv2D(width, 3, padding='same', use_bias=False, kernel_regularizer=reg)(x)
            x = layers.ReLU()(layers.BatchNormalization(**bn)(x))
            if i in POOL_AFTER:
                x = layers.MaxPooling2D(2)(x)
        x = layers.Dense(512, activation='relu', kernel_regularizer=reg)(layers.Flatten()(x))
        outputs = layers.Dense(11, kernel_regularizer=reg)(x)
    else:
        deps = get_model('dc40').default_deps
        x = layers.Conv2D(deps[0], 3, padding='same', use_bias=False, kernel_regularizer=reg)(inputs)
        layer = 1
        for stage in range(3):
            for _ in range(12):
                y = layers.ReLU()(layers.BatchNormalization(**bn)(x))
                y = layers.Conv2D(deps[layer], 3, padding='same', use_bias=False,
                                  kernel_regularizer=reg)(y)
                x = layers.Concatenate()([x, y])
                layer += 1
            if stage < 2:
                x = layers.ReLU()(layers.BatchNormalization(**bn)(x))
                x = layers.Conv2D(deps[layer], 1, use_bias=False, activation='relu',
                                  kernel_regularizer=reg)(x)
                x = layers.AveragePooling2D(2)(x)
                layer += 1
        x = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization(**bn)(x)))
        outputs = layers.Dense(10, kernel_regularizer=reg)(x)
    return keras.Model(inputs, outputs)


def run_keras(args):
    import numpy as np
    import keras
    import tensorflow as tf

    model = keras_model(args.model)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size).astype(np.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(data, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0,
              callbacks=[Timer()])
    _result(args.steps * args.batch_size / (times[-1] - times[args.warmup - 1]))


# -- PyTorch eager (optional: only where torch is importable) ------------------------------------
def torch_model(name):
    import torch
    from torch import nn
    from tf_benchmarks.models import get_model

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)  # TF decay 0.9

    if name == 'vc':
        from tf_benchmarks.models.vc_model import POOL_AFTER
        layers, cin = [], 3
        for i, width in enumerate(get_model('vc').default_deps):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), bn(width),
                       nn.ReLU(inplace=True)]
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            cin = width
        layers += [nn.Flatten(), nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 11)]
        return nn.Sequential(*layers)

    deps = get_model('dc40').default_deps

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.bn, self.conv = bn(cin), nn.Conv2d(cin, cout, 3, padding=1, bias=False)

        def forward(self, x):
            return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)

    layers, cin, layer = [nn.Conv2d(3, deps[0], 3, padding=1, bias=False)], deps[0], 1
    for stage in range(3):
        for _ in range(12):
            layers.append(Block(cin, deps[layer]))
            cin += deps[layer]
            layer += 1
        if stage < 2:
            layers += [bn(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, deps[layer], 1, bias=False),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            cin = deps[layer]
            layer += 1
    layers += [bn(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def run_torch(args):
    import torch
    model = torch_model(args.model).to(memory_format=torch.channels_last)
    kernels = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.SGD([{'params': kernels, 'weight_decay': 1e-4},
                                 {'params': others, 'weight_decay': 0.0}],
                                lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(args.batch_size, 3, 32, 32).mul_(2).sub_(1).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    model.train()
    for _ in range(args.warmup + args.steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter())
    _result(args.steps * args.batch_size / (times[-1] - times[args.warmup - 1]))


WORKERS = {'ours': run_ours, 'keras': run_keras, 'torch': run_torch}


# -- orchestration ---------------------------------------------------------------------------------
def run_worker(framework, model, args):
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', framework, '--models', model,
           '--steps', str(args.steps), '--warmup', str(args.warmup),
           '--batch_size', str(args.batch_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    raise RuntimeError('%s/%s failed:\n%s' % (framework, model, proc.stderr[-3000:]))


def _importable(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', default='vc,dc40')
    parser.add_argument('--frameworks', default=','.join(FRAMEWORKS))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--worker', choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.model = args.models
        WORKERS[args.worker](args)
        return
    frameworks = args.frameworks.split(',')
    if 'torch' in frameworks and not _importable('torch'):
        print('torch is not importable: PyTorch runs skipped (pip install torch==2.13.0)')
        frameworks.remove('torch')
    results = {}
    for model in args.models.split(','):
        for r in range(args.rounds):
            for fw in frameworks if r % 2 == 0 else frameworks[::-1]:
                res = run_worker(fw, model, args)
                results.setdefault((model, fw), []).append(res['images_per_sec'])
                print('%-5s %-6s round %d: %7.1f images/s  (peak RSS %.0f MB)'
                      % (model, fw, r + 1, res['images_per_sec'], res['peak_rss_mb']), flush=True)
    print('\nmodel  framework  images/s (median of %d)  ratio ours/framework' % args.rounds)
    for model in args.models.split(','):
        ours = sorted(results[(model, 'ours')])[len(results[(model, 'ours')]) // 2]
        for fw in frameworks:
            values = sorted(results[(model, fw)])
            median = values[len(values) // 2]
            print('%-6s %-10s %8.1f  %s' % (model, fw, median,
                                             '' if fw == 'ours' else '%.2fx' % (ours / median)))


if __name__ == '__main__':
    main()
