"""The cost of a method's training step relative to a plain one, robust to a shared CPU: one process
builds both training graphs (bench/methods.py) and alternates blocks of steps between them, so a
load that comes and goes hits both alike; the ratio is the median over the block pairs.

    python bench/paired_steps.py --model src110 --method aofp
    python bench/paired_steps.py --model dc40 --method csgd --pairs 12 --block 3
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _session(method, model, args):
    """(session, run one step) of a Trainer's graph for `method`, initialized and warmed up."""
    from bench import methods
    from tf_benchmarks.engine import session
    import tensorflow.compat.v1 as tf
    trainer = methods.step_trainer(methods.setup(method, model), model, args.batch_size,
                                   args.precision)
    with trainer.graph.as_default():
        local_init = tf.local_variables_initializer()
    sess = tf.Session(graph=trainer.graph, config=session.session_config())
    sess.run([trainer.init_op, local_init])
    step = methods.step_runner(trainer, sess)
    for _ in range(args.warmup):
        step()
    return sess, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='src56')
    parser.add_argument('--method', default='aofp', choices=('aofp', 'csgd'))
    parser.add_argument('--precision', default='fp32')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--pairs', type=int, default=10, help='alternations')
    parser.add_argument('--block', type=int, default=3, help='timed steps per block')
    parser.add_argument('--warmup', type=int, default=5)
    args = parser.parse_args()

    from tf_benchmarks.engine import session
    session.graph_mode()
    from tf_benchmarks.models.registry import get_model
    model = get_model(args.model)
    runs = {name: _session(name, model, args) for name in ('plain', args.method)}
    times = {name: [] for name in runs}
    for i in range(args.pairs):
        for name in (('plain', args.method) if i % 2 == 0 else (args.method, 'plain')):
            step = runs[name][1]
            start = time.perf_counter()
            for _ in range(args.block):
                step()
            times[name].append((time.perf_counter() - start) / args.block)
    for sess, _ in runs.values():
        sess.close()

    def median(values):
        values = sorted(values)
        return values[len(values) // 2] if len(values) % 2 else \
            (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    ratios = [m / p for m, p in zip(times[args.method], times['plain'])]
    load = os.getloadavg()[0]
    print('%s %s batch %d: plain %.0f ms, %s %.0f ms per step (medians of %d blocks of %d); '
          '%s / plain %.3fx (median of the pairs; quartiles %.3f-%.3f); load average %.2f'
          % (args.model, args.precision, args.batch_size, 1000 * median(times['plain']),
             args.method, 1000 * median(times[args.method]), args.pairs, args.block, args.method,
             median(ratios), sorted(ratios)[len(ratios) // 4],
             sorted(ratios)[(3 * len(ratios)) // 4], load))


if __name__ == '__main__':
    main()
