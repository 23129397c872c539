"""Which oneDNN kernels a training step runs: one step of bench/methods.py's trainer with
ONEDNN_VERBOSE=1, its primitive executions summed by kind, implementation and data types.

    python bench/onednn_kernels.py --model vc --precision bf16
    python bench/onednn_kernels.py --model vc --precision fp32 --onednn_bf16_rewrite
    python bench/onednn_kernels.py --model vc --precision bf16 --fp32_filter_gradients 16
    python bench/onednn_kernels.py --model vc --precision bf16 --by_shape   # and each conv's shape
"""

import argparse
import collections
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = 'ONEDNN_KERNELS_STEP'


def _worker(args):
    sys.path.insert(0, REPO)
    from tf_benchmarks.engine import session
    session.graph_mode()
    import tensorflow.compat.v1 as tf
    from bench import methods
    from tf_benchmarks.models.registry import get_model
    model = get_model(args.model)
    setup = methods.setup('plain', model)
    if args.fp32_filter_gradients:
        from bench.train_throughput import _fp32_filter_gradient_builder
        setup['builder_factory'] = _fp32_filter_gradient_builder(args.fp32_filter_gradients)
    trainer = methods.step_trainer(setup, model, args.batch_size,
                                   'bf16_activations' if args.bf16_activations else args.precision)
    config = session.session_config()
    if args.onednn_bf16_rewrite:
        from tensorflow.core.protobuf import rewriter_config_pb2
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    with tf.Session(graph=trainer.graph, config=config) as sess:
        sess.run([trainer.init_op, tf.local_variables_initializer()])
        run = methods.step_runner(trainer, sess)
        for _ in range(3):
            run()
        sys.stdout.flush()
        print(MARK, flush=True)
        run()
        sys.stdout.flush()
        print(MARK, flush=True)


def _executions(lines):
    """(fields from the primitive kind on, ms) of each of oneDNN's exec lines."""
    for line in lines:
        fields = line.strip().split(',')
        if not fields or fields[0] != 'onednn_verbose' or 'exec' not in fields:
            continue
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        yield fields[fields.index('exec') + 2:], ms


def _summary(lines):
    """{(kind, implementation, direction, data types): [ms, count]} of the exec lines."""
    table = collections.defaultdict(lambda: [0.0, 0])
    for fields, ms in _executions(lines):
        kind, impl, prop = fields[0], fields[1], fields[2]
        types = sorted({part.split(':')[1] for part in fields[3].split()
                        if part.count(':') >= 2 and part.split(':')[1] not in ('undef', '')})
        entry = table[(kind, impl, prop, '/'.join(types))]
        entry[0] += ms
        entry[1] += 1
    return table


def _conv_shapes(lines):
    """{(problem, direction): [ms, count]} of the convolution exec lines (oneDNN's descriptor,
    e.g. mb64_ic512oc512_ih4oh4kh3...)."""
    table = collections.defaultdict(lambda: [0.0, 0])
    for fields, ms in _executions(lines):
        if fields[0] != 'convolution':
            continue
        entry = table[(fields[-2], fields[2])]
        entry[0] += ms
        entry[1] += 1
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='vc')
    parser.add_argument('--precision', default='bf16')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--onednn_bf16_rewrite', action='store_true',
                        help='with oneDNN\'s automatic bfloat16 rewrite of the graph (use with '
                        '--precision fp32)')
    parser.add_argument('--fp32_filter_gradients', type=int, default=0, metavar='MAX_PIXELS',
                        help='the route of bench/train_throughput.py --bf16_routes: float32 kernel '
                        'gradients on outputs of at most MAX_PIXELS positions (16: 4x4 and '
                        'smaller; use with --precision bf16)')
    parser.add_argument('--bf16_activations', action='store_true',
                        help='--precision bf16_activations (bfloat16 activations end to end)')
    parser.add_argument('--by_shape', action='store_true',
                        help='also each convolution shape\'s forward, input- and kernel-gradient ms')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', '--model', args.model,
           '--precision', args.precision, '--batch_size', str(args.batch_size)]
    if args.onednn_bf16_rewrite:
        cmd.append('--onednn_bf16_rewrite')
    if args.fp32_filter_gradients:
        cmd += ['--fp32_filter_gradients', str(args.fp32_filter_gradients)]
    if args.bf16_activations:
        cmd.append('--bf16_activations')
    env = dict(os.environ, ONEDNN_VERBOSE='1', TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    parts = proc.stdout.split(MARK)
    if proc.returncode or len(parts) < 3:
        raise SystemExit('the step failed:\n' + proc.stderr[-3000:])
    table = _summary(parts[1].splitlines())
    total = sum(v[0] for v in table.values())
    routes = (' --onednn_bf16_rewrite' if args.onednn_bf16_rewrite else '') + (
        ' --fp32_filter_gradients %d' % args.fp32_filter_gradients
        if args.fp32_filter_gradients else '') + (
        ' --bf16_activations' if args.bf16_activations else '')
    print('%s %s%s batch %d: oneDNN primitives of one training step sum to %.0f ms'
          % (args.model, args.precision, routes, args.batch_size, total))
    print('| primitive | implementation | direction | data types | ms | calls | share |')
    print('|---|---|---|---|---|---|---|')
    for (kind, impl, prop, types), (ms, count) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        print('| %s | %s | %s | %s | %.1f | %d | %.1f%% |' % (kind, impl, prop, types, ms, count,
                                                             100 * ms / max(total, 1e-9)))
    if args.by_shape:
        shapes = _conv_shapes(parts[1].splitlines())
        directions = ('forward_training', 'backward_data', 'backward_weights')
        print()
        print('| convolution (oneDNN problem) | forward ms | input gradient ms | kernel gradient ms '
              '| kernel gradient / forward |')
        print('|---|---|---|---|---|')
        for problem in sorted({p for p, _ in shapes}, key=lambda p: -shapes[(p, directions[2])][0]):
            ms = [shapes[(problem, d)][0] if (problem, d) in shapes else 0.0 for d in directions]
            print('| %s | %.1f | %.1f | %.1f | %s |' % (
                problem, ms[0], ms[1], ms[2], '%.1fx' % (ms[2] / ms[0]) if ms[0] else '-'))


if __name__ == '__main__':
    main()
