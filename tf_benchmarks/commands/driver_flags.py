"""absl flags shared by the AOFP and C-SGD drivers (data, preset, epochs, batch size, precision,
seed, widths), applied to a copy of the chosen preset's settings, with clear errors for bad
values."""

import dataclasses
import math
import re

from absl import flags

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import imagenet_pipeline, sources
from tf_benchmarks.data.records import DATA_DIR_ENV, default_data_dir
from tf_benchmarks.engine import replicas
from tf_benchmarks.engine.train_config import DEFAULT_SEED, MAX_SEED, PRECISIONS
from tf_benchmarks.network import flops
from tf_benchmarks.network.input_spec import MAX_SIZE, MIN_SIZE, NORMALIZATIONS

FLAGS = flags.FLAGS
MAX_WORKER_TIMEOUT = 10 ** 6  # seconds (11.6 days)
MAX_DEVICES = 64  # --num_devices: the devices of one machine


def define_common_flags(presets, default_model):
    models = sorted(next(iter(presets.values())))
    flags.DEFINE_string('model', default_model, 'The network: %s; or your own: a .py file defining '
                        'add_inference(cnn, deps, num_classes) and DEFAULT_DEPS (imported because '
                        'you name it), a .json or .hdf5 file carrying a network description, or a '
                        'name an installed package registers (entry points tf_benchmarks.models); '
                        'see docs/own-network.md. File modes (eval, export, ...) without --model: '
                        'the file\'s own network.' % ', '.join(models))
    flags.DEFINE_string('data_dir', default_data_dir(), 'Directory with the CIFAR-10 tfrecords '
                        'or ImageNet-format shards (default: $%s, else ./data/cifar10).'
                        % DATA_DIR_ENV)
    flags.DEFINE_enum('dataset', 'auto', list(sources.KINDS), 'The format of --data_dir (auto: '
                      'from its contents).')
    flags.DEFINE_integer('image_size', None, 'ImageNet-format data: the size images are cropped '
                         'and resized to (default: the start file\'s, else the model\'s, 224 for '
                         'sres50), e.g. 64 for a smoke run.')
    flags.DEFINE_enum('normalization', None, sorted(NORMALIZATIONS), 'The pixels\' normalization '
                      '(default: the start file\'s, else inception, x / 127.5 - 1; torchvision: '
                      'ImageNet mean and std, which torchvision\'s weights expect).')
    flags.DEFINE_enum('crop', 'torchvision', list(imagenet_pipeline.CROPS), 'ImageNet-format '
                      'training crop: torchvision\'s RandomResizedCrop (the authors\' PyTorch '
                      'code) or tf_cnn_benchmarks\' distorted bounding box (inception).')
    flags.DEFINE_float('eval_every', None, 'Epochs between evaluations on the test split (the '
                       'validation shards) during training, to TensorBoard, the log and '
                       'results.json (default: none).')
    flags.DEFINE_bool('background_class', False, 'ImageNet-format data: keep tf_cnn_benchmarks\' '
                      'background class (1001 logits for ImageNet, record labels as they are).')
    flags.DEFINE_enum('flops_convention', None, list(flops.CONVENTIONS),
                      'How FLOPs are counted for targets and reports (see network/flops.py): '
                      'torchvision (the network as built), resnet_paper (sres50 with the '
                      'stride on the first 1x1, as the ResNet paper\'s Table 1) or '
                      'projection_2x2 (src56/src110 with the 1x1 stride-2 projections counted as '
                      '2x2 convs, as the authors\' script); default: the preset\'s (torchvision, '
                      'except the AOFP-C1/C2 rows).')
    flags.DEFINE_enum('preset', 'paper', sorted(presets), 'paper: the original hyperparameters; '
                      'smoke: a run of minutes on 2 CPU cores and the synthetic data set.')
    flags.DEFINE_float('max_epochs', None, 'Epochs of training (default: the preset\'s); LR '
                       'boundaries keep their fractions of the schedule.')
    flags.DEFINE_integer('batch_size', None, 'Training batch size (default: the preset\'s, 64).')
    flags.DEFINE_enum('precision', 'fp32', list(PRECISIONS), 'fp32 (the default, as the '
                      'originals); bf16: bfloat16 convolutions with float32 weights, activations, '
                      'BN and loss, 1.3-1.6x faster training on CPUs with AMX/AVX512-BF16; '
                      'bf16_activations: bfloat16 activations too (BN with float32 statistics), '
                      'less memory and on DenseNets and ResNet-50 faster still (measured on an AMD '
                      'EPYC; see docs/speed.md); fp16: float16 convolutions, float32 weights, BN '
                      'and loss, and dynamic loss scaling, for GPUs without bfloat16 (V100, '
                      '2080 Ti; it runs on a CPU, slowly).')
    flags.DEFINE_integer('seed', None, 'The run\'s seed, 0..%d: the initial weights, the data '
                         'order and augmentation of every training, AOFP\'s random drops and '
                         'C-SGD\'s k-means (default %d, the originals\' seeds; another is '
                         'recorded in run.json, and a run resumed with a different one is '
                         'refused).' % (MAX_SEED, DEFAULT_SEED))
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
    flags.DEFINE_integer('min_width', None, 'Both methods: no layer is pruned below this many '
                         'filters (default 1).')
    flags.DEFINE_integer('round_to', None, 'Both methods: every pruned layer keeps a multiple of '
                         'this many filters (default 1; see docs/own-network.md for the rule).')
    flags.DEFINE_bool('allow_partial_start', False, 'Start training from a weights file whose '
                      'entries do not all match the model (the missing ones keep their random '
                      'initialization); without it such a file is refused.')


def preset_settings(presets, model, user_preset=None):
    """A copy of --preset's settings for `model`: a shipped model's own, or for another network
    `user_preset(preset, model)` (paper and smoke)."""
    if model.builtin or user_preset is None:
        if model.name not in presets[FLAGS.preset]:
            raise UserError('--preset %s is a recipe of %s only; pass --model %s, or --preset '
                            'paper or smoke for %s'
                            % (FLAGS.preset, ', '.join(sorted(presets[FLAGS.preset])),
                               sorted(presets[FLAGS.preset])[0], model.name))
        return dataclasses.replace(presets[FLAGS.preset][model.name])
    if FLAGS.preset not in ('paper', 'smoke'):
        raise UserError('--preset %s is a recipe of %s only; networks of your own take --preset '
                        'paper or smoke' % (FLAGS.preset, ', '.join(sorted(presets[FLAGS.preset]))))
    return user_preset(FLAGS.preset, model)


def apply_common_flags(presets, model, user_preset=None):
    """A copy of the preset's settings for `model` (--model), with the common flags applied."""
    settings = preset_settings(presets, model, user_preset)
    if FLAGS.max_epochs is not None:
        settings.max_epochs = check_number('--max_epochs', FLAGS.max_epochs, positive=True)
    if FLAGS.batch_size is not None:
        settings.batch_size = check_number('--batch_size', FLAGS.batch_size, minimum=1)
    if FLAGS.checkpoint_every is not None:
        settings.checkpoint_every = check_number('--checkpoint_every', FLAGS.checkpoint_every,
                                                 minimum=1)
    settings.precision = FLAGS.precision
    if FLAGS.seed is not None:
        settings.seed = check_seed(FLAGS.seed)
    if FLAGS.image_size is not None:
        settings.image_size = check_number('--image_size', FLAGS.image_size, minimum=MIN_SIZE,
                                           maximum=MAX_SIZE)
    if FLAGS.normalization is not None:
        settings.normalization = FLAGS.normalization
    if FLAGS.flops_convention is not None:
        settings.flops_convention = FLAGS.flops_convention
    if FLAGS.eval_every is not None:
        settings.eval_every = check_number('--eval_every', FLAGS.eval_every, minimum=0)
    sources.configure(FLAGS.dataset, FLAGS.crop, FLAGS.background_class)
    if FLAGS.deterministic:
        import tensorflow as tf2
        tf2.config.experimental.enable_op_determinism()
    if FLAGS.deps:
        settings.deps = tuple(parse_ints(FLAGS.deps, '--deps'))
    if FLAGS.min_width is not None:
        settings.min_width = check_number('--min_width', FLAGS.min_width, minimum=1,
                                          maximum=1 << 16)
    if FLAGS.round_to is not None:
        settings.round_to = check_number('--round_to', FLAGS.round_to, minimum=1, maximum=1 << 16)
    configure_replicas()
    return settings


def check_seed(seed):
    """--seed: a non-negative integer of 31 bits (a TensorFlow graph seed and a NumPy seed)."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError('--seed must be an integer from 0 to %d (31 bits), got %d'
                        % (MAX_SEED, seed))
    return seed


def configure_replicas():
    """The process's tf.distribute strategy from --strategy, --num_devices and TF_CONFIG."""
    check_number('--worker_timeout', FLAGS.worker_timeout, positive=True,
                 maximum=MAX_WORKER_TIMEOUT)
    if FLAGS.num_devices is not None:
        check_number('--num_devices', FLAGS.num_devices, minimum=1, maximum=MAX_DEVICES)
    r = replicas.configure(FLAGS.strategy, FLAGS.num_devices, FLAGS.worker_timeout)
    if r.kind != 'default':
        print('strategy %s: %s' % (r.kind, r.describe()))
    if r.multi_worker:
        print('worker %d: TensorFlow\'s server for this worker listens on port %s of every network '
              'interface and is unauthenticated; keep the cluster on a trusted network (see '
              'docs/security.md)' % (r.worker_index, r.server.target.rsplit(':', 1)[-1]))


def override_from_flags(settings, names, positive=(), not_negative=()):
    """Set each settings field in `names` to the flag of the same name, where that flag is given;
    a number must be finite, and those in `positive` > 0, those in `not_negative` >= 0."""
    for name in names:
        value = getattr(FLAGS, name)
        if value is not None:
            if isinstance(value, (int, float)):
                check_number('--' + name, value, positive=name in positive,
                             minimum=0 if name in not_negative else None)
            setattr(settings, name, value)


def check_number(flag, value, positive=False, minimum=None, maximum=None):
    """`value` of `flag`, which must be a finite number, > 0 if `positive`, and within
    [minimum, maximum] where given; else a UserError saying the range."""
    if positive:
        ok, wanted = value > 0, 'must be positive'
    elif minimum == 0:
        ok, wanted = value >= 0, 'must not be negative'
    elif minimum is not None:
        ok, wanted = value >= minimum, 'must be at least %g' % minimum
    else:
        ok, wanted = True, 'must be a number'
    if maximum is not None:
        ok, wanted = ok and value <= maximum, wanted + ' and at most %g' % maximum
    if isinstance(value, int):
        if not ok:
            raise UserError('%s %s, got %d' % (flag, wanted, value))
    elif not (ok and math.isfinite(value)):
        raise UserError('%s %s (a finite number), got %g' % (flag, wanted, value))
    return value


_INT = r'\d+'
_FLOAT = r'(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'


def _parse_list(text, flag, entry, convert, kind):
    """Entries separated by commas (or a `-` between two entries, as in 4-4-8); an empty,
    negative or malformed entry is a UserError naming it."""
    values = []
    for item in text.split(','):
        item = item.strip()
        if re.fullmatch(r'-\s*%s' % entry, item):
            raise UserError('%s takes non-negative %s, got %s in %r' % (flag, kind, item, text))
        if not re.fullmatch(r'{0}(?:-{0})*'.format(entry), item):
            raise UserError('%s takes comma-separated %s, got %r in %r'
                            % (flag, kind, item, text))
        values += [convert(x) for x in re.findall(entry, item)]
    if not all(math.isfinite(v) for v in values):
        raise UserError('%s takes finite %s, got %r' % (flag, kind, text))
    return values


def parse_floats(text, flag):
    """Finite non-negative numbers, comma-separated."""
    return _parse_list(text, flag, _FLOAT, float, 'numbers')


def parse_ints(text, flag):
    """Non-negative integers, comma-separated."""
    return _parse_list(text, flag, _INT, int, 'integers')
