"""AOFP on CIFAR-10, the original's command line (`--model vc`, the default; also dc40, src56,
src110):

    python aofp/aofp_standalone.py train               # -> vc_scratch_savedweights.hdf5
    python aofp/aofp_standalone.py eval FILE.hdf5      # -> bc_overall_eval_records.txt
    python aofp/aofp_standalone.py prune               # -> bds_exps/..., bds_overall_logs.txt,
                                                       #    results.json
    python aofp/aofp_standalone.py prune --target_latency_ms 4.5 --latency_batch 32
                                                       # the search stops at a predicted latency
    python aofp/aofp_standalone.py latency-table FILE.hdf5 --out TABLE.json   # per-layer latency
    python aofp/aofp_standalone.py oracle FILE.hdf5 [--layers 0,4,8] [--batches N] [--steps K]
                                                       # -> oracle_<model>.json, oracle_*_layer<i>.png
    python aofp/aofp_standalone.py export FILE.hdf5 --out DIR [--tflite]   # SavedModel (+ TFLite)
    python aofp/aofp_standalone.py summary FILE.hdf5 [--base BASE.hdf5] [--json]  # per layer
    python aofp/aofp_standalone.py verify A.hdf5 B.hdf5  # B's logits against A's (tuned: masked)
    python aofp/aofp_standalone.py report              # PNG plots from results.json
    python aofp/aofp_standalone.py import FILE.pth --out FILE.hdf5   # torchvision's ResNet-50 -> sres50

`oracle` measures how well AOFP's search approximates oracle pruning on FILE's model: every
filter of each layer removed alone on the first N test batches (the loss increase, and AOFP's
metric measured exactly), against AOFP's estimate after K search steps and the L1 / |BN gamma|
baselines. Outputs go to the working directory. `--preset paper` (default) is exactly the original's
hyperparameters; `--preset smoke` scales everything down for a CPU and the synthetic data set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_benchmarks.engine.session import graph_mode  # noqa: E402

graph_mode()  # before anything imports TensorFlow

from absl import flags  # noqa: E402

from tf_benchmarks.commands import deploy_commands  # noqa: E402
from tf_benchmarks.commands.driver import Driver  # noqa: E402
from tf_benchmarks.commands.driver_flags import (apply_common_flags,  # noqa: E402
                                                 override_from_flags, parse_floats, parse_ints)
from tf_benchmarks.core.errors import UserError  # noqa: E402
from aofp import pipeline  # noqa: E402
from aofp.latency_target import LatencyTarget, parse_targets  # noqa: E402
from aofp.presets import PRESETS, user_preset  # noqa: E402

FLAGS = flags.FLAGS
USAGE = ('usage: aofp_standalone.py train | eval FILE.hdf5 | prune | oracle FILE.hdf5 | '
         + deploy_commands.USAGE)


def settings_from_flags(model):
    settings = apply_common_flags(PRESETS, model, user_preset)
    override_from_flags(settings, ('batches_per_half', 'metric_limit', 'finetune_epochs',
                                   'search_max_epochs'),
                        positive=('batches_per_half', 'finetune_epochs', 'search_max_epochs'),
                        not_negative=('metric_limit',))
    if FLAGS.target_layers:
        settings.target_layers = tuple(parse_ints(FLAGS.target_layers, '--target_layers'))
    if FLAGS.itr_schedule:
        settings.itr_schedule = tuple(parse_floats(FLAGS.itr_schedule, '--itr_schedule'))
        if any(not 0 < t < 1 for t in settings.itr_schedule):
            raise UserError('--itr_schedule targets are fractions of FLOPs removed, in (0, 1)')
    return settings


def train(model, settings, _file, _mode):
    pipeline.train_base(model, settings, FLAGS.data_dir, FLAGS.restart_from)


def evaluate(model, settings, path, _mode):
    pipeline.eval_file(model, path, FLAGS.data_dir, settings.eval_batch_size)


def oracle(model, settings, path, _mode):
    from aofp.oracle import command
    layers = parse_ints(FLAGS.layers, '--layers') if FLAGS.layers else settings.target_layers
    steps = settings.batches_per_half if FLAGS.steps is None else FLAGS.steps
    command.run_oracle(model, path, FLAGS.data_dir, layers, FLAGS.batches,
                       settings.eval_batch_size, steps, settings.batch_size, seed=settings.seed)


def prune(model, settings, _file, _mode):
    base = FLAGS.base_weights or model.scratch_weights
    if not os.path.exists(base):
        raise UserError('base weights %s do not exist; run `aofp_standalone.py train --model %s` '
                        'first or pass --base_weights' % (base, model.name))
    target = None
    if FLAGS.target_latency_ms:
        if FLAGS.itr_schedule:
            raise UserError('--target_latency_ms replaces --itr_schedule (one latency target per '
                            'iteration); pass one of them')
        calls = deploy_commands.latency_settings_from_flags() if FLAGS.latency_table else \
            deploy_commands.table_calls_from_flags()   # the run measures the table
        target = LatencyTarget(parse_targets(parse_floats(FLAGS.target_latency_ms,
                                                          '--target_latency_ms')),
                               calls.batch, calls.calls, FLAGS.latency_table,
                               few_calls=FLAGS.latency_few_calls)
    elif FLAGS.latency_table:
        raise UserError('--latency_table is the table of --target_latency_ms; pass a target too')
    pipeline.AofpPruning(model, settings, FLAGS.data_dir, base, FLAGS.restart_from,
                         FLAGS.allow_partial_start,
                         verify=deploy_commands.cut_check_from_flags(),
                         latency=deploy_commands.stage_latency(base),
                         latency_target=target).run()


DRIVER = Driver('aofp_standalone.py', PRESETS, 'vc', settings_from_flags,
                {'train': train, 'eval': evaluate, 'prune': prune, 'oracle': oracle},
                file_modes=('eval', 'oracle'), usage=USAGE,
                masked_version=pipeline.masked_version)
DRIVER.define_flags()
flags.DEFINE_integer('batches_per_half', None, 'Training steps per binary-search half.')
flags.DEFINE_float('metric_limit', None, 'Largest mean error of the next layer for a prune.')
flags.DEFINE_string('itr_schedule', None, 'FLOPs-removed targets of the iterations, e.g. 0.3,0.4.')
flags.DEFINE_float('finetune_epochs', None, 'Epochs of finetuning after each pruning.')
flags.DEFINE_float('search_max_epochs', None, 'Upper bound on the epochs of one search.')
flags.DEFINE_string('target_latency_ms', None, '`prune`: stop each search when the latency '
                    'table predicts at most this many ms per call at --latency_batch (one per '
                    'iteration, e.g. 6,4.5; in place of --itr_schedule\'s FLOPs targets).')
flags.DEFINE_string('latency_table', None, '`prune --target_latency_ms`: the per-layer table '
                    '(written by `latency-table`, e.g. on the target device); default: measured '
                    'on this machine from the start file into <model>_latency_table.json.')
flags.DEFINE_string('base_weights', None, 'Weights `prune` starts from (default: '
                    '<model>_scratch_savedweights.hdf5).')
flags.DEFINE_string('target_layers', None, 'Conv layers (widths indices) to search, e.g. 1,3,5 '
                    '(default: every layer of vc, the incremental layers of dc40, the internal '
                    'layers of the ResNets); a residual group is named by its first layer.')
flags.DEFINE_string('layers', None, '`oracle`: the conv layers to score, e.g. 0,4,8 (default: the '
                    'layers `prune` searches; a residual group is named by its first layer).')
flags.DEFINE_integer('batches', 2, '`oracle`: test batches (of the evaluation batch size, 500) '
                     'the oracle scores are measured on.')
flags.DEFINE_integer('steps', None, '`oracle`: steps of AOFP\'s search graph that make its '
                     'estimate (default: the preset\'s --batches_per_half, one search half).')
main = DRIVER.main
run = DRIVER.run

if __name__ == '__main__':
    run()
