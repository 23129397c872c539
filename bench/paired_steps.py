"""The cost of a method's training step relative to a plain one, robust to a shared CPU: one process
builds both training graphs (bench/methods.py) and alternates blocks of steps between them, so a
load that comes and goes hits both alike; the ratio is the median over the block pairs. The plain
step's own time (s/step, images/s) is printed too, as measured under the load of the moment.

    python bench/paired_steps.py --model src110 --method aofp
    python bench/paired_steps.py --model dc40 --method csgd --pairs 12 --block 3
    python bench/paired_steps.py --model sres50 --method csgd --image_size 224 --batch_size 32 \\
        --pairs 6 --block 2 --warmup 2
    # a plain step at narrower widths (sres50's internal layers x 0.7) against the full widths
    python bench/paired_steps.py --model sres50 --method plain --deps 0.7 --batch_size 32
    # bf16 with float32 kernel gradients on the 4x4 and 2x2 outputs against plain bf16
    python bench/paired_steps.py --model vc --method fp32_filter_gradients --precision bf16
    # this AOFP search step against another version of it (a before/after in one process)
    git show HEAD~1:aofp/masked_builder.py > /tmp/before.py
    python bench/paired_steps.py --model vc --method aofp --baseline /tmp/before.py
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _session(method, model, args, deps=None, **options):
    """(session, run one step) of a Trainer's graph for `method`, initialized and warmed up."""
    from bench import methods
    from tf_benchmarks.engine import session
    import tensorflow.compat.v1 as tf
    trainer = methods.step_trainer(methods.setup(method, model, **options), model,
                                   args.batch_size, args.precision, args.image_size, deps)
    with trainer.graph.as_default():
        local_init = tf.local_variables_initializer()
    sess = tf.Session(graph=trainer.graph, config=session.session_config())
    sess.run([trainer.init_op, local_init])
    step = methods.step_runner(trainer, sess)
    for _ in range(args.warmup):
        step()
    return sess, step


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else \
        (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


def _quartiles(values):
    """(lower, upper) quartiles: the medians of the lower and the upper half."""
    values, half = sorted(values), len(values) // 2
    return _median(values[:max(1, half)]), _median(values[-max(1, half):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='src56')
    parser.add_argument('--method', default='aofp',
                        choices=('aofp', 'csgd', 'plain', 'fp32_filter_gradients',
                                 'aligned_bn_k2', 'bf16_activations'),
                        help='the step set against a plain step at the full widths (plain: a '
                        'plain step at --deps; fp32_filter_gradients: a plain step with float32 '
                        'kernel gradients on outputs of at most --max_pixels positions, for '
                        '--precision bf16; aligned_bn_k2: a plain step with the aligned batch '
                        'norm at channels that are multiples of 8 but not 16 too; '
                        'bf16_activations: a plain step with activations in bfloat16, for '
                        '--precision bf16)')
    parser.add_argument('--max_pixels', type=int, default=16)
    parser.add_argument('--deps', default=None,
                        help='with --method plain: the widths of its run, as C-SGD\'s '
                        '--target_deps (a fraction of the target layers like 0.7, or every '
                        'width comma-separated)')
    parser.add_argument('--baseline', default=None,
                        help='with --method aofp: another version of aofp/masked_builder.py; its '
                        'search step joins the alternation, and this one is compared with it')
    parser.add_argument('--precision', default='fp32')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--image_size', type=int, default=None,
                        help='input size (default: the model\'s own, 32 for the CIFAR models, '
                        '224 for sres50)')
    parser.add_argument('--pairs', type=int, default=10, help='alternations')
    parser.add_argument('--block', type=int, default=3, help='timed steps per block')
    parser.add_argument('--warmup', type=int, default=5)
    args = parser.parse_args()
    if (args.method == 'plain') != (args.deps is not None):
        parser.error('--deps goes with --method plain, and --method plain needs --deps')
    if args.baseline and args.method != 'aofp':
        parser.error('--baseline goes with --method aofp')

    from tf_benchmarks.engine import session
    session.graph_mode()
    from tf_benchmarks.models.registry import get_model
    model = get_model(args.model)
    args.image_size = args.image_size or model.image_size
    deps = None
    if args.deps is not None:
        from csgd.targets import parse_target_deps
        deps = parse_target_deps(model, model.default_deps, args.deps)[-1]
    other = args.method if deps is None else 'plain at %s' % args.deps
    options = ({'max_pixels': args.max_pixels} if args.method == 'fp32_filter_gradients'
               else {})
    runs = {'plain': _session('plain', model, args), other: _session(args.method, model, args,
                                                                      deps, **options)}
    if args.baseline:
        runs['baseline'] = _session('aofp', model, args, builder_file=args.baseline)
    names = list(runs)
    times = {name: [] for name in runs}
    for i in range(args.pairs):
        for name in (names if i % 2 == 0 else names[::-1]):
            step = runs[name][1]
            start = time.perf_counter()
            for _ in range(args.block):
                step()
            times[name].append((time.perf_counter() - start) / args.block)
    for sess, _ in runs.values():
        sess.close()

    ratios = [m / p for m, p in zip(times[other], times['plain'])]
    plain, method = _median(times['plain']), _median(times[other])
    low, high = _quartiles(ratios)
    print('%s %s batch %d at %dx%d: plain %.3f s/step (%.1f images/s), %s %.3f s/step (%.1f '
          'images/s), medians of %d blocks of %d steps; %s / plain %.3fx (median of the pairs; '
          'quartiles %.3f-%.3f); load average %.2f'
          % (args.model, args.precision, args.batch_size, args.image_size, args.image_size,
             plain, args.batch_size / plain, other, method, args.batch_size / method, args.pairs,
             args.block, other, _median(ratios), low, high, os.getloadavg()[0]))
    if args.baseline:
        for name, (a, b) in (('baseline / plain', ('baseline', 'plain')),
                             ('%s / baseline' % other, (other, 'baseline'))):
            ratios = [m / p for m, p in zip(times[a], times[b])]
            low, high = _quartiles(ratios)
            print('%s (%s): %.3fx (quartiles %.3f-%.3f)' % (name, args.baseline, _median(ratios),
                                                            low, high))


if __name__ == '__main__':
    main()
