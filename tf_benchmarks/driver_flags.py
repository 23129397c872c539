"""absl flags shared by the AOFP and C-SGD drivers (data, preset, epochs, batch size, precision,
widths), applied to a copy of the chosen preset's settings, with clear errors for bad values."""

import dataclasses

from absl import flags

from tf_benchmarks.errors import UserError
from tf_benchmarks.records import DATA_DIR_ENV, default_data_dir

FLAGS = flags.FLAGS


def define_common_flags(presets):
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


def apply_common_flags(presets):
    settings = dataclasses.replace(presets[FLAGS.preset])
    if FLAGS.max_epochs is not None:
        if FLAGS.max_epochs <= 0:
            raise UserError('--max_epochs must be positive, got %g' % FLAGS.max_epochs)
        settings.max_epochs = FLAGS.max_epochs
    if FLAGS.batch_size is not None:
        if FLAGS.batch_size < 1:
            raise UserError('--batch_size must be at least 1, got %d' % FLAGS.batch_size)
        settings.batch_size = FLAGS.batch_size
    settings.precision = FLAGS.precision
    if FLAGS.deps:
        settings.deps = tuple(parse_ints(FLAGS.deps, '--deps'))
    return settings


def override_from_flags(settings, names):
    """Set each settings field in `names` to the flag of the same name, where that flag is given."""
    for name in names:
        value = getattr(FLAGS, name)
        if value is not None:
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
