"""absl flags shared by the AOFP and C-SGD drivers (data, preset, epochs, batch size, precision,
widths), applied to a copy of the chosen preset's settings, with clear errors for bad values."""

import dataclasses

from absl import flags

from tf_benchmarks.engine import replicas
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data.records import DATA_DIR_ENV, default_data_dir

FLAGS = flags.FLAGS


def define_common_flags(presets, default_model):
    models = sorted(next(iter(presets.values())))
    flags.DEFINE_enum('model', default_model, models, 'The network: %s.' % ', '.join(models))
    flags.DEFINE_string('data_dir', default_data_dir(), 'Directory with the CIFAR-10 tfrecords '
                        '(default: $%s, else ./data/cifar10).' % DATA_DIR_ENV)
    flags.DEFINE_enum('preset', 'paper', sorted(presets), 'paper: the original hyperparameters; '
                      'smoke: a run of minutes on 2 CPU cores and the synthetic data set.')
    flags.DEFINE_float('max_epochs', None, 'Epochs of training (default: the preset\'s); LR '
                       'boundaries keep their fractions of the schedule.')
    flags.DEFINE_integer('batch_size', None, 'Training batch size (default: the preset\'s, 64).')
    flags.DEFINE_enum('precision', 'fp32', ['fp32', 'bf16'], 'fp32 (the default, as the originals) '
                      'or bf16: bfloat16 convolutions with float32 weights, BN and loss; about '
                      '1.6x faster training on CPUs with AMX/AVX512-BF16.')
    flags.DEFINE_string('deps', None, 'Widths of the model `train` builds, comma-separated '
                        '(default: the preset\'s).')
    flags.DEFINE_integer('checkpoint_every', None, 'Steps between resumable checkpoints (default: '
                         'the preset\'s; they are also written every 10 minutes).')
    flags.DEFINE_string('restart_from', None, 'Redo this stage (a name from run.json, e.g. '
                        'itr0.search) and every stage after it, with the settings given now.')
    flags.DEFINE_bool('deterministic', False, 'TensorFlow op determinism: a run stopped and '
                      'resumed ends with the same bytes as one never stopped.')
    flags.DEFINE_enum('strategy', 'default', ['default', 'mirrored', 'multi_worker'],
                      'default: one device; mirrored: the GPUs of this machine (without GPUs, '
                      '--num_devices logical CPU devices); multi_worker: the machines TF_CONFIG '
                      'names, each running the same command in one shared working directory. The '
                      'global batch (--batch_size) is split over the replicas.')
    flags.DEFINE_integer('num_devices', None, 'Devices of --strategy mirrored (default: every GPU, '
                         'or 2 logical CPU devices without GPUs).')
    flags.DEFINE_float('worker_timeout', 600.0, 'multi_worker: seconds a step may wait for the '
                       'other workers before the run stops with an error.')
    flags.DEFINE_bool('allow_partial_start', False, 'Start training from a weights file whose '
                      'entries do not all match the model (the missing ones keep their random '
                      'initialization); without it such a file is refused.')


def apply_common_flags(presets):
    """A copy of the preset's settings for --model, with the common flags applied."""
    settings = dataclasses.replace(presets[FLAGS.preset][FLAGS.model])
    if FLAGS.max_epochs is not None:
        if FLAGS.max_epochs <= 0:
            raise UserError('--max_epochs must be positive, got %g' % FLAGS.max_epochs)
        settings.max_epochs = FLAGS.max_epochs
    if FLAGS.batch_size is not None:
        if FLAGS.batch_size < 1:
            raise UserError('--batch_size must be at least 1, got %d' % FLAGS.batch_size)
        settings.batch_size = FLAGS.batch_size
    if FLAGS.checkpoint_every is not None:
        if FLAGS.checkpoint_every < 1:
            raise UserError('--checkpoint_every must be at least 1, got %d' % FLAGS.checkpoint_every)
        settings.checkpoint_every = FLAGS.checkpoint_every
    settings.precision = FLAGS.precision
    if FLAGS.deterministic:
        import tensorflow as tf2
        tf2.config.experimental.enable_op_determinism()
    if FLAGS.deps:
        settings.deps = tuple(parse_ints(FLAGS.deps, '--deps'))
    configure_replicas()
    return settings


def configure_replicas():
    """The process's tf.distribute strategy from --strategy, --num_devices and TF_CONFIG."""
    if FLAGS.worker_timeout <= 0:
        raise UserError('--worker_timeout must be positive, got %g' % FLAGS.worker_timeout)
    r = replicas.configure(FLAGS.strategy, FLAGS.num_devices, FLAGS.worker_timeout)
    if r.kind != 'default':
        print('strategy %s: %s' % (r.kind, r.describe()))
    if r.multi_worker:
        print('worker %d: TensorFlow\'s server for this worker listens on port %s of every network '
              'interface and is unauthenticated; keep the cluster on a trusted network (see '
              'docs/security.md)' % (r.worker_index, r.server.target.rsplit(':', 1)[-1]))


def override_from_flags(settings, names, positive=()):
    """Set each settings field in `names` to the flag of the same name, where that flag is given;
    those in `positive` must be > 0."""
    for name in names:
        value = getattr(FLAGS, name)
        if value is not None:
            if name in positive and not value > 0:
                raise UserError('--%s must be positive, got %g' % (name, value))
            setattr(settings, name, value)


def _parse_list(text, flag, convert, kind):
    try:
        return [convert(x) for x in text.replace('-', ',').split(',') if x.strip()]
    except ValueError:
        raise UserError('%s takes comma-separated %s, got %r' % (flag, kind, text))


def parse_floats(text, flag):
    return _parse_list(text, flag, float, 'numbers')


def parse_ints(text, flag):
    return _parse_list(text, flag, int, 'integers')
