"""Where an sres50 training step's time goes, ours against PyTorch's ResNet-50, at batch 32 and
--image_size (224) on the in-memory batch of bench/train_throughput.py: ours as
bench/profile_step.py does (one traced step, summed by op type, ops run one at a time: one inter-op thread), PyTorch's
through torch.profiler (self CPU time by aten op, channels-last, autocast for bf16). Each side runs
in its own process.

    python bench/profile_resnet50.py --precision fp32
    python bench/profile_resnet50.py --precision bf16 --image_size 64 --side ours
"""

import argparse
import collections
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _table(title, by_type, top):
    total = sum(v[0] for v in by_type.values())
    print(title + '; profiled ops sum to %.0f ms' % (total / 1000))
    print('| op type | ms | ops | share |')
    print('|---|---|---|---|')
    rows = sorted(by_type.items(), key=lambda kv: -kv[1][0])
    for kind, (micros, count) in rows[:top]:
        print('| %s | %.1f | %d | %.1f%% |' % (kind, micros / 1000, count, 100 * micros / total))
    rest = sum(v[0] for _, v in rows[top:])
    print('| (other %d types) | %.1f | | %.1f%% |' % (max(0, len(rows) - top), rest / 1000,
                                                      100 * rest / max(total, 1)))


def profile_ours(args):
    from tf_benchmarks.engine import session
    session.graph_mode()
    import tensorflow.compat.v1 as tf
    from bench import methods
    from bench.train_throughput import RECIPES, InMemoryImages
    from tf_benchmarks.engine.train_config import TrainConfig
    from tf_benchmarks.engine.trainer import Trainer
    from tf_benchmarks.models.registry import get_model
    import tempfile
    model = get_model('sres50')
    config = TrainConfig(num_steps=1, batch_size=args.batch_size, lr_values=[0.01],
                         precision=args.precision, **RECIPES['sres50'])
    with tempfile.TemporaryDirectory() as train_dir:
        trainer = Trainer(model, model.default_deps,
                          InMemoryImages(args.image_size, model.num_classes), config, train_dir,
                          log=lambda *_: None)
        with tf.Session(graph=trainer.graph, config=session.session_config(0, 1)) as sess:
            sess.run([trainer.init_op, tf.local_variables_initializer()])
            run = methods.step_runner(trainer, sess)
            for _ in range(2):
                run()
            start = time.perf_counter()
            for _ in range(args.steps):
                run()
            step = (time.perf_counter() - start) / args.steps
            metadata = tf.RunMetadata()
            run(options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                run_metadata=metadata)
    by_type = collections.defaultdict(lambda: [0, 0])
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            label = node.timeline_label.split('(')[0].split('= ')[-1].split()
            kind = label[0] if label else node.node_name
            by_type[kind][0] += node.all_end_rel_micros
            by_type[kind][1] += 1
    _table('ours sres50 %s batch %d %dx%d: %.0f ms per step untraced, one inter-op thread '
           '(%.1f images/s)' % (args.precision, args.batch_size, args.image_size, args.image_size,
                                1000 * step, args.batch_size / step), by_type, args.top)


def profile_torch(args):
    import contextlib
    import torch
    from bench.torch_resnet50 import ResNet50
    model = ResNet50(1000).to(memory_format=torch.channels_last)
    kernels = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.SGD([{'params': kernels, 'weight_decay': 1e-4},
                                 {'params': others, 'weight_decay': 0.0}],
                                lr=0.01, momentum=0.9, nesterov=False)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size).mul_(2).sub_(1).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = (torch.autocast('cpu', dtype=torch.bfloat16) if args.precision == 'bf16'
                else contextlib.nullcontext())
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = (time.perf_counter() - start) / args.steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    by_type = collections.defaultdict(lambda: [0, 0])
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            by_type[event.key] = [event.self_cpu_time_total, event.count]
    _table('PyTorch ResNet-50 %s batch %d %dx%d: %.0f ms per step unprofiled (%.1f images/s), '
           'self CPU time by op' % (args.precision, args.batch_size, args.image_size,
                                    args.image_size, 1000 * elapsed, args.batch_size / elapsed),
           by_type, args.top)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'bf16'))
    parser.add_argument('--image_size', type=int, default=224)
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=3, help='timed steps (after 2 untimed ones) '
                        'before the profiled one')
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--side', choices=('both', 'ours', 'torch'), default='both')
    args = parser.parse_args()
    if args.side == 'both':
        for side in ('ours', 'torch'):
            cmd = [sys.executable, os.path.abspath(__file__), '--side', side] + [
                a for k in ('precision', 'image_size', 'batch_size', 'steps', 'top')
                for a in ('--' + k, str(getattr(args, k)))]
            subprocess.run(cmd, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
            print()
        return
    (profile_ours if args.side == 'ours' else profile_torch)(args)


if __name__ == '__main__':
    main()
