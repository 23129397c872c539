"""C-SGD on CIFAR-10, the original's command line (`--model dc40`, the default; also vc, src56,
src110), plus `train`, since the original's pretrained std_dc40_9382.hdf5 is not available:

    python csgd/csgd_standalone.py train               # -> dc40_scratch_savedweights.hdf5
    python csgd/csgd_standalone.py magnitude1          # -> magnitude1_trained.hdf5
    python csgd/csgd_standalone.py csgd1               # -> dc40_csgd1_itr0_prunedweights.hdf5
    python csgd/csgd_standalone.py eval FILE.hdf5      # -> origin_dc40_eval_record.txt
    python csgd/csgd_standalone.py export FILE.hdf5 --out DIR [--tflite]   # SavedModel (+ TFLite)
    python csgd/csgd_standalone.py summary FILE.hdf5 [--base BASE.hdf5] [--json]  # per layer
    python csgd/csgd_standalone.py verify A.hdf5 B.hdf5  # B's logits against A's
    python csgd/csgd_standalone.py latency-table FILE.hdf5 --out TABLE.json   # per-layer latency
    python csgd/csgd_standalone.py report              # PNG plots from results.json
    python csgd/csgd_standalone.py import FILE.pth --out FILE.hdf5   # torchvision's ResNet-50 -> sres50

As in the original, a mode containing `magnitude` or `csgd` runs that method with the mode as the
file prefix. Outputs go to the working directory; magnitude1 and csgd1 also write results.json.
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
                                                 override_from_flags, parse_ints)
from csgd import magnitude, pipeline  # noqa: E402
from csgd.presets import PRESETS, user_preset  # noqa: E402

FLAGS = flags.FLAGS
USAGE = ('usage: csgd_standalone.py train | magnitude1 | csgd1 | eval FILE.hdf5 | '
         + deploy_commands.USAGE)


def settings_from_flags(model):
    settings = apply_common_flags(PRESETS, model, user_preset)
    override_from_flags(settings, ('centri_strength', 'target_deps', 'cluster_method',
                                   'magnitude_variant', 'bn_strength_ratio'),
                        not_negative=('centri_strength', 'bn_strength_ratio'))
    if FLAGS.target_layers:
        settings.target_layers = tuple(parse_ints(FLAGS.target_layers, '--target_layers'))
    return settings


def train(model, settings, _file, _mode):
    epochs = FLAGS.max_epochs if FLAGS.max_epochs is not None else settings.train_epochs
    pipeline.train_base(model, settings, FLAGS.data_dir, epochs, FLAGS.restart_from)


def evaluate(model, settings, path, _mode):
    pipeline.eval_file(model, path, FLAGS.data_dir, settings.eval_command_batch_size)


def run_magnitude(model, settings, _file, mode):
    magnitude.MagnitudePruning(model, settings, FLAGS.data_dir, FLAGS.init_hdf5, mode,
                               restart_from=FLAGS.restart_from,
                               partial_start=FLAGS.allow_partial_start,
                               verify=deploy_commands.cut_check_from_flags(),
                               latency=deploy_commands.stage_latency(
                                   FLAGS.init_hdf5 or model.scratch_weights)).run()


def run_csgd(model, settings, _file, mode):
    pipeline.CentripetalSGD(model, settings, FLAGS.data_dir, FLAGS.init_hdf5, mode,
                            clusters_file=FLAGS.clusters_file, restart_from=FLAGS.restart_from,
                            partial_start=FLAGS.allow_partial_start,
                            verify=deploy_commands.cut_check_from_flags(),
                            latency=deploy_commands.stage_latency(
                                FLAGS.init_hdf5 or model.scratch_weights)).run()


def family(mode):
    """As in the original, a mode containing `magnitude` or `csgd` runs that method, with the mode
    as the file prefix."""
    return 'magnitude' if 'magnitude' in mode else 'csgd' if 'csgd' in mode else None


DRIVER = Driver('csgd_standalone.py', PRESETS, 'dc40', settings_from_flags,
                {'train': train, 'eval': evaluate, 'magnitude': run_magnitude, 'csgd': run_csgd},
                file_modes=('eval',), usage=USAGE, family=family)
DRIVER.define_flags()
flags.DEFINE_float('centri_strength', None, 'Centripetal strength epsilon (paper: 3e-3).')
flags.DEFINE_float('bn_strength_ratio', None, 'Centripetal strength of BN gamma/beta as a multiple '
                   'of --centri_strength (dc40: 1, the TF demo; other models: 0.1, the authors\' '
                   'later code).')
flags.DEFINE_string('target_deps', None, 'dc40: incremental-layer widths per stage, e.g. 3-3-3; '
                    'other models: a fraction of every width (5/8, 0.625) or every width '
                    '(comma-separated). Several targets, comma-separated, are iterations, e.g. '
                    '13/16,11/16,5/8.')
flags.DEFINE_string('target_layers', None, 'The layers a --target_deps fraction shrinks (widths '
                    'indices, a channel group named by its first layer; default: every layer, '
                    'sres50\'s internal layers).')
flags.DEFINE_enum('cluster_method', None, ['kmeans', 'even', 'biased'], 'How csgd1 clusters.')
flags.DEFINE_enum('magnitude_variant', None, ['original', 'clean'], 'original: the original\'s '
                  'three quirks; clean: keep the top filters, drop the rest, augmented finetuning.')
flags.DEFINE_string('clusters_file', None, 'csgd1: use these clusters instead of computing them '
                    '(a file written by this project, or an original *_eqcls.npy).')
flags.DEFINE_string('init_hdf5', None, 'Pretrained weights magnitude1 and csgd1 start from '
                    '(default: <model>_scratch_savedweights.hdf5; an original std_dc40_9382.hdf5 '
                    'also loads).')
main = DRIVER.main
run = DRIVER.run

if __name__ == '__main__':
    run()
