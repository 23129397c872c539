"""Measured speed-up of pruned models on this CPU: each model at its full widths against the same model
with a fixed share of the filters of its prunable layers removed (AOFP's target layers: every layer
of `vc`, the incremental layers of `dc40`, the internal layers of the ResNets), random weights
(speed does not depend on their values), exported as `export --tflite` does and timed by the
stages' latency measurement (tf_benchmarks/deploy/latency.py): one fresh process per round, the
calls of the two models alternating; medians over the rounds.

    python bench/pruned_latency.py                                   # vc, dc40, src56, sres50 at 64
    python bench/pruned_latency.py --models sres50 --image_size 224 --batch 2 --calls 20
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_benchmarks.engine.session import graph_mode  # noqa: E402

graph_mode()

from aofp.presets import PRESETS  # noqa: E402
from tf_benchmarks.deploy import latency  # noqa: E402
from tf_benchmarks.deploy.export import export_file  # noqa: E402
from tf_benchmarks.deploy.latency_table import random_weights  # noqa: E402
from tf_benchmarks.files import hdf5_io  # noqa: E402
from tf_benchmarks.models.registry import get_model  # noqa: E402
from tf_benchmarks.network import flops  # noqa: E402
from tf_benchmarks.network.input_spec import InputSpec  # noqa: E402


def pruned_deps(model, keep):
    """The full widths with `keep` of every prunable layer's filters kept (its group's members)."""
    targets = PRESETS['paper'][model.name].target_layers
    targets = range(len(model.default_deps)) if targets is None else targets
    members = {g.root: g.members for g in model.groups}
    deps = list(model.default_deps)
    for root in targets:
        for m in members.get(root, [root]):
            deps[m] = max(1, int(round(model.default_deps[m] * keep)))
    return deps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='vc,dc40,src56,sres50')
    parser.add_argument('--keep', type=float, default=0.5, help='share of filters kept')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--calls', type=int, default=50)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--image_size', type=int, default=None, help='sres50 (default 64)')
    parser.add_argument('--json')
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(','):
            model = get_model(name)
            size = args.image_size or (64 if name == 'sres50' else model.image_size)
            spec = InputSpec(size) if size != model.image_size else None
            dirs, widths = [], {}
            for kind, deps in (('base', list(model.default_deps)),
                               ('pruned', pruned_deps(model, args.keep))):
                path = os.path.join(work, '%s_%s.hdf5' % (name, kind))
                hdf5_io.save_hdf5(path, random_weights(model.trace(deps), 0), deps,
                                  input_spec=spec)
                export_file(path, os.path.join(work, '%s_%s' % (name, kind)), tflite=True,
                            log=lambda m: None)
                dirs.append(os.path.join(work, '%s_%s' % (name, kind)))
                widths[kind] = deps
            removed = flops.flops_pruned_ratio(model, widths['pruned'], image_size=size)
            settings = latency.LatencySettings(args.calls, args.batch)
            rounds = []
            for r in range(args.rounds):
                pruned, base = latency.run_worker(dirs[::-1], settings, size)
                rounds.append(dict(base=base, pruned=pruned, load=os.getloadavg()[0]))
                print('%s round %d (load %.1f): %s' % (name, r + 1, rounds[-1]['load'], ', '.join(
                    '%s %.2f -> %.2f ms, %.0f -> %.0f images/s' % (
                        rt, base[rt]['batch1_median_ms'], pruned[rt]['batch1_median_ms'],
                        base[rt]['images_per_s'], pruned[rt]['images_per_s']) for rt in base)),
                      flush=True)
            row = dict(image_size=size, batch=args.batch, flops_removed=removed,
                       widths=widths['pruned'], rounds=rounds)
            for rt in rounds[0]['base']:
                row[rt] = {key: statistics.median(rd[part][rt][fig] for rd in rounds)
                           for part in ('base', 'pruned')
                           for fig, key in ((f, '%s_%s' % (part, f)) for f in
                                            ('batch1_median_ms', 'batch1_p95_ms', 'images_per_s'))}
                row[rt]['speedup_batch1'] = statistics.median(
                    rd['base'][rt]['batch1_median_ms'] / rd['pruned'][rt]['batch1_median_ms']
                    for rd in rounds)
                row[rt]['speedup_throughput'] = statistics.median(
                    rd['pruned'][rt]['images_per_s'] / rd['base'][rt]['images_per_s']
                    for rd in rounds)
            out[name] = row
            print('%s: %.1f%% FLOPs removed (FLOPs ratio %.2fx): %s' % (
                name, 100 * removed, 1 / (1 - removed), '; '.join(
                    '%s x%.2f batch 1, x%.2f batch %d' % (rt, row[rt]['speedup_batch1'],
                                                         row[rt]['speedup_throughput'], args.batch)
                    for rt in rounds[0]['base'])), flush=True)
    print(json.dumps(dict(machine=latency.machine()), indent=None))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=latency.machine(), args=vars(args), results=out), f, indent=1)


if __name__ == '__main__':
    main()
