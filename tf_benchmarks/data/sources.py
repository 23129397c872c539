"""Which data set a data directory holds, and what the engine needs of it: training data (a source
with `num_examples`, `batches(...)` and `initialize(session, step)`), the evaluation pass, the
identity recorded in run.json, and the number of logits. Two formats: slim's CIFAR-10 tfrecords
(`records`, `input_pipeline`) and ImageNet-format shards with their manifest (`imagenet_records`,
`imagenet_pipeline`). The drivers' flags set the process's options once (`configure`): the data
set kind (found from the directory's contents by default), the training crop and whether the
logits keep tf_cnn_benchmarks' background class.

A sharded set is split over the workers of a multi-worker run (worker w reads shards w, w+W, ...,
and produces its part of the global batch), so the stream depends on the number of workers, which
is recorded in the data settings: a run resumed with another number is refused by run.json.
"""

import dataclasses
import hashlib
import json
import os

import tensorflow.compat.v1 as tf

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import imagenet_pipeline, imagenet_records, input_pipeline, labels, records
from tf_benchmarks.network.input_spec import INCEPTION, InputSpec

KINDS = ('auto', 'cifar10', 'imagenet')
CIFAR10, IMAGENET = 'cifar10', 'imagenet'


@dataclasses.dataclass
class Options:
    kind: str = 'auto'
    crop: str = 'torchvision'
    background: bool = False   # ImageNet: 1001 logits, label 0 the unused background class


_options = Options()


def configure(kind='auto', crop='torchvision', background=False):
    """Set the process's data options (the drivers do, from their flags)."""
    global _options
    if kind not in KINDS:
        raise UserError('--dataset must be one of %s, got %r' % (', '.join(KINDS), kind))
    if crop not in imagenet_pipeline.CROPS:
        raise UserError('--crop must be one of %s, got %r'
                        % (', '.join(imagenet_pipeline.CROPS), crop))
    _options = Options(kind, crop, bool(background))


def options():
    return _options


def _has_shards(data_dir):
    if os.path.exists(os.path.join(data_dir, imagenet_records.MANIFEST_FILE)):
        return True
    return os.path.isdir(data_dir) and any(imagenet_records.SHARD_RE.match(n)
                                           for n in os.listdir(data_dir))


def kind_of(data_dir):
    """'cifar10' or 'imagenet': the --dataset flag, or what the directory holds."""
    if _options.kind != 'auto':
        return _options.kind
    shards = os.path.isdir(data_dir) and _has_shards(data_dir)
    if shards and records.find_split(data_dir, 'train') is not None:
        raise UserError('%s holds both CIFAR-10 tfrecords and ImageNet-format shards; pass '
                        '--dataset cifar10 or --dataset imagenet' % os.path.abspath(data_dir))
    # Neither: CIFAR-10's reader says what is missing and how to make either format.
    return IMAGENET if shards else CIFAR10


# -- sharded sets ---------------------------------------------------------------------------------
class ShardedSet:
    """An ImageNet-format set: its manifest (computed once and cached for foreign shards)."""

    _cache = {}

    def __init__(self, data_dir):
        self.directory = data_dir
        self.manifest = imagenet_records.load_or_compute_manifest(data_dir)
        self.num_classes = self.manifest['num_classes']
        self.label_offset = self.manifest['label_offset']

    @classmethod
    def open(cls, data_dir):
        key = os.path.abspath(data_dir)
        path = os.path.join(key, imagenet_records.MANIFEST_FILE)
        stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else None
        if key not in cls._cache or cls._cache[key][0] != stamp:
            made = cls(data_dir)
            stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else None
            cls._cache[key] = (stamp, made)
        return cls._cache[key][1]

    def split(self, split):
        split = 'validation' if split == 'test' else split
        if split not in self.manifest['splits']:
            raise UserError('%s has no %s shards; convert the images with a %s folder (or '
                            '--validation_fraction)' % (self.directory, split, split))
        entries = self.manifest['splits'][split]['shards']
        return [imagenet_pipeline.Shard(os.path.join(self.directory, e['file']), e['records'])
                for e in entries]

    def logits(self):
        return self.num_classes + (self.label_offset if _options.background else 0)

    def label_offset_for_logits(self):
        """What is subtracted from a record's label: 0 with the background class kept."""
        return 0 if _options.background else self.label_offset

    def settings(self):
        """The set's identity for run.json: the manifest's digest (the shards' own digests are in
        it; nothing is hashed at start), and the workers reading it."""
        text = json.dumps(self.manifest['splits'], sort_keys=True).encode()
        return {'manifest_sha256': hashlib.sha256(text).hexdigest(),
                'num_classes': self.num_classes, 'background_class': _options.background,
                'workers': workers.count()}


class ShardedData:
    """Training batches from the training shards of this worker (see the module docstring)."""

    per_worker = True

    def __init__(self, sharded, input_spec, crop):
        shards = sharded.split('train')
        mine = shards[workers.index()::workers.count()]
        if not mine:
            raise UserError('%s has %d training shards, fewer than the %d workers; convert with '
                            'at least --train_shards %d' % (sharded.directory, len(shards),
                                                            workers.count(), workers.count()))
        self.sharded, self.shards, self.spec, self.crop = sharded, mine, input_spec, crop
        self.num_examples = sum(s.count for s in shards)
        self.local_examples = sum(s.count for s in mine)
        self.description = '%s (%d training shards%s)' % (
            sharded.directory, len(mine), ' of worker %d' % workers.index()
            if workers.count() > 1 else '')
        self.logits = sharded.logits()

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=0):
        """`batch_size` is this worker's part of the global batch."""
        self.batch_size = batch_size
        self._start = tf.placeholder(tf.int64, [], name='train_stream_start')
        ds = imagenet_pipeline.training_batches(
            self.shards, self._start, batch_size, self.spec.image_size, self.spec.normalization,
            self.logits, self.sharded.label_offset_for_logits(), self.crop, augmentation,
            shuffle, seed)
        self._iterator = tf.data.make_initializable_iterator(ds)
        return self._iterator.get_next()

    def initialize(self, session, step):
        session.run(self._iterator.initializer, {self._start: step * self.batch_size})


# -- what the engine asks for -----------------------------------------------------------------------
def _cifar_spec_check(data_dir, spec):
    records.split_path(data_dir, 'train')  # missing data is said first, with how to make it
    if spec is not None and (spec.image_size != 32 or spec.normalization != INCEPTION):
        raise UserError('%s holds CIFAR-10 (32x32 images, x / 127.5 - 1), but the weights expect '
                        '%s; use ImageNet-format data for them, or weights for 32x32 inputs'
                        % (data_dir, spec.describe()))


def training_data(data_dir, input_spec=None):
    """The training source of `data_dir`: CIFAR-10's RecordData or a sharded set's ShardedData
    (with `input_spec`: image size and normalization)."""
    if kind_of(data_dir) == CIFAR10:
        _cifar_spec_check(data_dir, input_spec)
        return input_pipeline.RecordData(data_dir)
    return ShardedData(ShardedSet.open(data_dir), input_spec or InputSpec(224), _options.crop)


def check_data(data_dir, input_spec=None):
    """Every input check before a command writes anything; returns the training source."""
    if kind_of(data_dir) == CIFAR10:
        _cifar_spec_check(data_dir, input_spec)
        return input_pipeline.check_data(data_dir)
    data = training_data(data_dir, input_spec)
    data.sharded.split('validation')
    return data


def data_settings(data_dir):
    """What identifies the data in a run record."""
    if kind_of(data_dir) == CIFAR10:
        return records.data_settings(data_dir)
    return ShardedSet.open(data_dir).settings()


def logits(data_dir, model):
    """How many logits a model trained or evaluated on `data_dir` has: the model's own for CIFAR-10
    (vc keeps the original's 11), the set's classes for a sharded set (1001 with the background
    class kept)."""
    if kind_of(data_dir) == CIFAR10:
        return model.num_classes
    return ShardedSet.open(data_dir).logits()


def class_names(data_dir):
    """The names of the data set's classes, one per logit: CIFAR-10's labels.txt (or its ten), a
    sharded set's class folders (their text where a names file gave one), with `background` first
    where the background class is kept."""
    if kind_of(data_dir) == CIFAR10:
        return tuple(labels.class_names(data_dir))
    sharded = ShardedSet.open(data_dir)
    names = tuple((c['text'] or c['synset']).strip() or c['synset'] for c in
                  sharded.manifest['classes'])
    return (('background',) * sharded.label_offset + names) if _options.background else names


@dataclasses.dataclass
class EvalSource:
    dataset: object     # tf.data of (images, labels) batches, one exact pass
    description: str


def eval_source(data_dir, split, batch_size, input_spec=None, num_logits=None):
    """The evaluation pass over a split (`test`: CIFAR-10's test file, or the validation shards)."""
    if kind_of(data_dir) == CIFAR10:
        _cifar_spec_check(data_dir, input_spec)
        path = records.split_path(data_dir, split)
        labels.check_labels(path, labels.class_names(data_dir))  # before the first record is read
        return EvalSource(input_pipeline.eval_dataset(path, batch_size), path)
    sharded = ShardedSet.open(data_dir)
    shards = sharded.split(split)
    spec = input_spec or InputSpec(224)
    return EvalSource(imagenet_pipeline.eval_batches(
        [s.path for s in shards], batch_size, spec.image_size, spec.normalization,
        num_logits or sharded.logits(), sharded.label_offset_for_logits()),
        '%s (%d %s shards)' % (sharded.directory, len(shards), split))
