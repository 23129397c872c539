"""Where a training step's time goes: one traced step of the project's trainer, summed by op type,
with ops run one at a time (one inter-op thread, so every op's time is its own).

    python bench/profile_step.py --model vc
    python bench/profile_step.py --model dc40 --precision bf16
    python bench/profile_step.py --model src110 --method aofp   # the AOFP search step (csgd: C-SGD's)
    python bench/profile_step.py --model vc --method aofp --traces 5   # per op the fastest of 5
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='vc')
    parser.add_argument('--precision', default='fp32')
    parser.add_argument('--method', default='plain',
                        choices=('plain', 'aofp', 'csgd', 'bf16_activations'),
                        help='the step of bench/methods.py to profile (bf16_activations: a plain '
                        'step with --precision bf16_activations)')
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--traces', type=int, default=1,
                        help='traced steps; each op counts its fastest run among them, which '
                        'damps the load of a shared CPU')
    parser.add_argument('--nodes', type=int, default=0,
                        help='also list this many of the slowest single ops by name')
    args = parser.parse_args()

    from tf_benchmarks.engine import session
    session.graph_mode()
    import tensorflow.compat.v1 as tf
    from bench import methods
    from tf_benchmarks.models.registry import get_model

    model = get_model(args.model)
    trainer = methods.step_trainer(methods.setup(args.method, model), model, args.batch_size,
                                   args.precision)
    with tf.Session(graph=trainer.graph, config=session.session_config(0, 1)) as sess:
        sess.run([trainer.init_op, tf.local_variables_initializer()])
        run = methods.step_runner(trainer, sess)  # a step as the training loop runs it
        for _ in range(5):
            run()
        start = time.perf_counter()
        for _ in range(5):
            run()
        step = (time.perf_counter() - start) / 5
        fastest = {}  # node name -> (op type, fastest micros)
        for _ in range(args.traces):
            metadata = tf.RunMetadata()
            run(options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                run_metadata=metadata)
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    label = node.timeline_label.split('(')[0].split('= ')[-1].split()
                    kind = label[0] if label else node.node_name
                    micros = node.all_end_rel_micros
                    if node.node_name in fastest:
                        micros = min(micros, fastest[node.node_name][1])
                    fastest[node.node_name] = (kind, micros)
    by_type = collections.defaultdict(lambda: [0, 0])
    for kind, micros in fastest.values():
        by_type[kind][0] += micros
        by_type[kind][1] += 1
    total = sum(v[0] for v in by_type.values())
    print('%s %s %s batch %d: %.0f ms per step untraced (%.1f images/s); traced ops sum to %.0f '
          'ms%s' % (args.model, args.method, args.precision, args.batch_size, 1000 * step,
                    args.batch_size / step, total / 1000, ' (each op its fastest of %d traces)'
                    % args.traces if args.traces > 1 else ''))
    print('| op type | ms | ops | share |')
    print('|---|---|---|---|')
    rows = sorted(by_type.items(), key=lambda kv: -kv[1][0])
    for kind, (micros, count) in rows[:args.top]:
        print('| %s | %.1f | %d | %.1f%% |' % (kind, micros / 1000, count, 100 * micros / total))
    rest = sum(v[0] for _, v in rows[args.top:])
    print('| (other %d types) | %.1f | | %.1f%% |' % (len(rows) - args.top, rest / 1000,
                                                      100 * rest / total))
    for name, (kind, micros) in sorted(fastest.items(), key=lambda kv: -kv[1][1])[:args.nodes]:
        print('%8.2f ms  %s  %s' % (micros / 1000, kind, name))


if __name__ == '__main__':
    main()
