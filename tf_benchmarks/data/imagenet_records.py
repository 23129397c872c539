"""The ImageNet TFRecord format of tensorflow/models' build_imagenet_data.py: shard names, feature
keys, the example encoding, a parse function for readers, and the shards' manifest (its format,
reading and validation, and computing it for shards that came without one).

Shards are `train-00000-of-01024` ... and `validation-00000-of-00128` ... in one folder. One
`tf.train.Example` per image:

    image/encoded        bytes   RGB JPEG
    image/height         int64   pixels
    image/width          int64   pixels
    image/channels       int64   3
    image/colorspace     bytes   b'RGB'
    image/format         bytes   b'JPEG'
    image/filename       bytes   the file's base name, e.g. b'n01440764_10026.JPEG'
    image/class/label    int64   1..N in sorted synset order (0 = background, never written)
    image/class/synset   bytes   e.g. b'n01440764'
    image/class/text     bytes   e.g. b'tench, Tinca tinca' (the synset if no names were given)
    image/object/bbox/xmin, ymin, xmax, ymax   float lists in [0, 1], possibly empty
    image/object/bbox/label                    int64 list, the image's label once per box

`manifest.json` beside the shards (written last by datasets/build_imagenet_data.py, or computed
once for foreign shards by `load_or_compute_manifest`) describes them; see `validate_manifest`
for its fields. TensorFlow is imported inside the functions that need it, so the converter's
coordinating process starts without it.
"""

import json
import os
import re
import struct

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.atomic import write_json

FORMAT = 'tensorflow/models build_imagenet_data.py TFRecord shards'
MANIFEST_FILE = 'manifest.json'
MANIFEST_VERSION = 1
LABEL_OFFSET = 1  # label 0 is the background class: dataset class c has record label c + 1
SPLITS = ('train', 'validation')
SHARD_RE = re.compile(r'^(train|validation)-(\d{5})-of-(\d{5})$')

IMAGE_KEY = 'image/encoded'
LABEL_KEY = 'image/class/label'
SYNSET_KEY = 'image/class/synset'
TEXT_KEY = 'image/class/text'
BBOX_KEYS = ('image/object/bbox/xmin', 'image/object/bbox/ymin', 'image/object/bbox/xmax',
             'image/object/bbox/ymax')
BBOX_LABEL_KEY = 'image/object/bbox/label'
KEYS = (IMAGE_KEY, 'image/height', 'image/width', 'image/channels', 'image/colorspace',
        'image/format', 'image/filename', LABEL_KEY, SYNSET_KEY, TEXT_KEY) + BBOX_KEYS + (
        BBOX_LABEL_KEY,)


def shard_name(split, index, count):
    """'train-00002-of-01024'."""
    return '%s-%05d-of-%05d' % (split, index, count)


def shard_names(split, count):
    return [shard_name(split, i, count) for i in range(count)]


# -- encoding --------------------------------------------------------------------------------------
def _bytes(value):
    import tensorflow as tf
    if isinstance(value, str):
        value = value.encode('utf-8')
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_example(jpeg, height, width, filename, label, synset, text, boxes=()):
    """The Example of one image; `boxes` are (xmin, ymin, xmax, ymax) tuples in [0, 1]."""
    import tensorflow as tf
    columns = list(zip(*boxes)) if boxes else [(), (), (), ()]
    feature = {
        IMAGE_KEY: _bytes(jpeg), 'image/height': _ints([height]), 'image/width': _ints([width]),
        'image/channels': _ints([3]), 'image/colorspace': _bytes(b'RGB'),
        'image/format': _bytes(b'JPEG'), 'image/filename': _bytes(os.path.basename(filename)),
        LABEL_KEY: _ints([label]), SYNSET_KEY: _bytes(synset), TEXT_KEY: _bytes(text),
        BBOX_LABEL_KEY: _ints([label] * len(boxes)),
    }
    # The original's column order: xmin, ymin, xmax, ymax from each (xmin, ymin, xmax, ymax) box.
    for key, column in zip(BBOX_KEYS, columns):
        feature[key] = _floats(column)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize(example):
    """Deterministic bytes (sorted map keys): the same image always gives the same record."""
    return example.SerializeToString(deterministic=True)


# -- parsing ---------------------------------------------------------------------------------------
def feature_spec():
    """The parse spec of every key (the bbox lists variable-length)."""
    import tensorflow as tf
    fixed = {IMAGE_KEY: tf.string, 'image/colorspace': tf.string, 'image/format': tf.string,
             'image/filename': tf.string, SYNSET_KEY: tf.string, TEXT_KEY: tf.string,
             'image/height': tf.int64, 'image/width': tf.int64, 'image/channels': tf.int64,
             LABEL_KEY: tf.int64}
    defaults = {tf.string: '', tf.int64: -1}
    spec = {k: tf.io.FixedLenFeature([], t, default_value=defaults[t]) for k, t in fixed.items()}
    spec[IMAGE_KEY] = tf.io.FixedLenFeature([], tf.string)
    spec[LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    for key in BBOX_KEYS:
        spec[key] = tf.io.VarLenFeature(tf.float32)
    spec[BBOX_LABEL_KEY] = tf.io.VarLenFeature(tf.int64)
    return spec


def parse_features(serialized):
    """Graph op: serialized Example -> {key: tensor} of every key (bbox lists as dense [N])."""
    import tensorflow as tf
    features = tf.io.parse_single_example(serialized, feature_spec())
    for key in BBOX_KEYS + (BBOX_LABEL_KEY,):
        features[key] = tf.sparse.to_dense(features[key])
    return features


def parse_example(serialized):
    """Graph op for readers, as tf_cnn_benchmarks' parse_example_proto: serialized Example ->
    (JPEG bytes, int32 label in 1..N, float32 boxes [1, num_boxes, 4] as (ymin, xmin, ymax, xmax),
    class text). Only the keys every writer fills are required (the image and the label)."""
    import tensorflow as tf
    features = parse_features(serialized)
    xmin, ymin, xmax, ymax = (tf.expand_dims(features[k], 0) for k in BBOX_KEYS)
    bbox = tf.expand_dims(tf.transpose(tf.concat([ymin, xmin, ymax, xmax], 0)), 0)
    return (features[IMAGE_KEY], tf.cast(features[LABEL_KEY], tf.int32), bbox,
            features[TEXT_KEY])


def example_fields(record):
    """A serialized record -> {key: python value} (bytes, int, or list for the bbox keys); for
    checks and tools, without a graph."""
    import tensorflow as tf
    feature = tf.train.Example.FromString(record).features.feature
    out = {}
    for key, value in feature.items():
        kind = value.WhichOneof('kind')
        values = list(getattr(value, kind).value) if kind else []
        out[key] = values if key in BBOX_KEYS + (BBOX_LABEL_KEY,) else (
            values[0] if values else None)
    return out


# -- reading shards without TensorFlow -----------------------------------------------------------
def iter_records(path, hasher=None):
    """The records of a TFRecord file in order (read from its framing: length, length CRC, data,
    data CRC); every byte read is fed to `hasher`. A truncated file is a UserError."""
    with open(path, 'rb') as f:
        while True:
            header = f.read(12)
            if hasher is not None:
                hasher.update(header)
            if not header:
                return
            if len(header) < 12:
                raise UserError('%s is truncated (a record header is cut off); re-create it'
                                % path)
            length = struct.unpack('<Q', header[:8])[0]
            body = f.read(length + 4)
            if hasher is not None:
                hasher.update(body)
            if len(body) < length + 4:
                raise UserError('%s is truncated (its last record is cut off); re-create it'
                                % path)
            yield body[:length]


# -- the manifest ----------------------------------------------------------------------------------
def _malformed(path, what):
    return UserError('%s is not a valid ImageNet shard manifest: %s. Delete it and re-create it '
                     '(datasets/build_imagenet_data.py writes it; for shards from another '
                     'converter it is computed again on first use)' % (path, what))


def _check(condition, path, what):
    if not condition:
        raise _malformed(path, what)


def _is_int(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _validate_classes(manifest, path):
    n, classes = manifest.get('num_classes'), manifest.get('classes')
    _check(_is_int(n, 1), path, '"num_classes" must be a positive integer')
    _check(isinstance(classes, list) and len(classes) == n, path,
           '"classes" must be a list of num_classes (%s) entries' % n)
    for i, entry in enumerate(classes):
        _check(isinstance(entry, dict) and entry.get('label') == i + LABEL_OFFSET
               and isinstance(entry.get('synset'), str) and isinstance(entry.get('text'), str),
               path, 'classes[%d] must be {"label": %d, "synset": str, "text": str}'
               % (i, i + LABEL_OFFSET))


def _validate_shard(entry, split, index, count, path):
    where = 'splits.%s.shards[%d]' % (split, index)
    _check(isinstance(entry, dict), path, '%s must be an object' % where)
    _check(entry.get('file') == shard_name(split, index, count), path,
           '%s.file must be %s' % (where, shard_name(split, index, count)))
    _check(_is_int(entry.get('records')) and _is_int(entry.get('bytes')), path,
           '%s.records and .bytes must be non-negative integers' % where)
    digest = entry.get('sha256')
    _check(isinstance(digest, str) and re.match(r'^[0-9a-f]{64}$', digest), path,
           '%s.sha256 must be 64 hex digits' % where)


def _validate_split(split, info, path):
    _check(isinstance(info, dict), path, 'splits.%s must be an object' % split)
    shards = info.get('shards')
    _check(isinstance(shards, list) and shards, path,
           'splits.%s.shards must be a non-empty list' % split)
    for i, entry in enumerate(shards):
        _validate_shard(entry, split, i, len(shards), path)
    total = sum(e['records'] for e in shards)
    _check(info.get('num_records') == total, path, 'splits.%s.num_records (%r) is not the sum of '
           'its shards\' records (%d)' % (split, info.get('num_records'), total))
    _check(isinstance(info.get('skipped', []), list), path,
           'splits.%s.skipped must be a list' % split)


def validate_manifest(manifest, path):
    """Check a loaded manifest; any malformation is one UserError naming `path`. Fields:

    format (FORMAT), version (1), origin ('build_imagenet_data' or 'computed from shards'),
    label_offset (1), num_classes, classes [{label, synset, text}] with label = index + 1,
    splits {train|validation: {num_records, shards [{file, records, bytes, sha256}],
    skipped [{file, error}], image_size {height|width: {min, max, mean}} or null}}.
    """
    _check(isinstance(manifest, dict), path, 'the top level must be a JSON object')
    _check(manifest.get('format') == FORMAT, path, '"format" must be %r' % FORMAT)
    _check(manifest.get('version') == MANIFEST_VERSION, path,
           '"version" must be %d' % MANIFEST_VERSION)
    _check(manifest.get('label_offset') == LABEL_OFFSET, path,
           '"label_offset" must be %d (label 0 is the background class)' % LABEL_OFFSET)
    _validate_classes(manifest, path)
    splits = manifest.get('splits')
    _check(isinstance(splits, dict) and splits and set(splits) <= set(SPLITS), path,
           '"splits" must map some of %s to their shards' % ', '.join(SPLITS))
    for split, info in splits.items():
        _validate_split(split, info, path)
    return manifest


def read_manifest(path, check_files=True):
    """Load and validate a manifest (a file, or the folder holding manifest.json). With
    `check_files`, every listed shard must exist beside it with the listed size."""
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_FILE)
    try:
        with open(path, 'rb') as f:
            manifest = json.loads(f.read().decode('utf-8'))
    except FileNotFoundError:
        raise UserError('%s does not exist; convert the images with datasets/build_imagenet_data.py'
                        % path)
    except (OSError, ValueError) as e:
        raise _malformed(path, 'it is not readable JSON (%s)' % e)
    validate_manifest(manifest, path)
    if check_files:
        check_shard_files(manifest, os.path.dirname(os.path.abspath(path)), path)
    return manifest


def check_shard_files(manifest, directory, path):
    for info in manifest['splits'].values():
        for entry in info['shards']:
            shard = os.path.join(directory, entry['file'])
            if not os.path.exists(shard):
                raise UserError('%s lists %s, which is missing; the set is incomplete: copy it '
                                'again or re-run the conversion' % (path, shard))
            size = os.path.getsize(shard)
            if size != entry['bytes']:
                raise UserError('%s has %d bytes, but %s says %d: it is not the shard that was '
                                'written; copy it again or re-run the conversion'
                                % (shard, size, path, entry['bytes']))


def shard_paths(manifest, directory, split):
    return [os.path.join(directory, e['file']) for e in manifest['splits'][split]['shards']]


def size_stats(heights, widths):
    """{height|width: {min, max, mean}}, or None without images."""
    if not heights:
        return None
    return {name: {'min': min(v), 'max': max(v), 'mean': round(sum(v) / len(v), 1)}
            for name, v in (('height', heights), ('width', widths))}


def build_manifest(origin, classes, splits):
    """The manifest dict: `classes` [(synset, text)] in label order, `splits` {split: info}."""
    return {'format': FORMAT, 'version': MANIFEST_VERSION, 'origin': origin,
            'label_offset': LABEL_OFFSET, 'num_classes': len(classes),
            'classes': [{'label': i + LABEL_OFFSET, 'synset': s, 'text': t}
                        for i, (s, t) in enumerate(classes)],
            'splits': splits}


# -- foreign shards --------------------------------------------------------------------------------
def find_shards(directory):
    """{split: [shard paths in order]} of the shards in `directory`; a missing shard is an error."""
    found = {}
    for name in os.listdir(directory):
        match = SHARD_RE.match(name)
        if match:
            found.setdefault(match.group(1), {}).setdefault(int(match.group(3)), set()).add(
                int(match.group(2)))
    out = {}
    for split, by_count in sorted(found.items()):
        if len(by_count) > 1:
            raise UserError('%s holds %s shards of several counts (%s); keep one set'
                            % (directory, split, ', '.join('-of-%05d' % c for c in by_count)))
        (count, indices), = by_count.items()
        missing = sorted(set(range(count)) - indices)
        if missing:
            raise UserError('%s lacks %s (and %d more missing); the shards are incomplete'
                            % (directory, shard_name(split, missing[0], count), len(missing) - 1))
        out[split] = [os.path.join(directory, n) for n in shard_names(split, count)]
    if not out:
        raise UserError('%s holds no ImageNet shards (train-00000-of-NNNNN, ...) and no %s; '
                        'convert the images with datasets/build_imagenet_data.py'
                        % (directory, MANIFEST_FILE))
    return out


def scan_shard(path, classes):
    """One pass over a shard: its entry (file, records, bytes, sha256) and its image sizes;
    `classes` {label: (synset, text)} is filled from the records."""
    import hashlib
    hasher = hashlib.sha256()
    heights, widths, count = [], [], 0
    for record in iter_records(path, hasher):
        try:
            fields = example_fields(record)
        except Exception as e:  # protobuf's DecodeError and kin
            raise UserError('%s holds a record that is not a tf.train.Example (%s)' % (path, e))
        label = fields.get(LABEL_KEY)
        if label is None or fields.get(IMAGE_KEY) is None:
            raise UserError('record %d of %s has no %s or %s; it is not an ImageNet shard'
                            % (count, path, LABEL_KEY, IMAGE_KEY))
        classes.setdefault(label, (_text(fields.get(SYNSET_KEY)), _text(fields.get(TEXT_KEY))))
        heights.append(fields.get('image/height') or 0)
        widths.append(fields.get('image/width') or 0)
        count += 1
    entry = {'file': os.path.basename(path), 'records': count,
             'bytes': os.path.getsize(path), 'sha256': hasher.hexdigest()}
    return entry, heights, widths


def _text(value):
    return value.decode('utf-8', 'replace') if value else ''


def compute_manifest(directory, log=print):
    """The manifest of shards that came without one (tensorflow/models' own output): every shard
    read once (records counted, sha256, classes and image sizes from the records)."""
    classes, splits = {}, {}
    for split, paths in find_shards(directory).items():
        shards, heights, widths = [], [], []
        for i, path in enumerate(paths):
            entry, h, w = scan_shard(path, classes)
            shards.append(entry)
            heights += h
            widths += w
            log('>> %s: read %d of %d shards' % (directory, i + 1, len(paths)))
        splits[split] = {'num_records': sum(e['records'] for e in shards), 'shards': shards,
                         'skipped': [], 'image_size': size_stats(heights, widths)}
    if not classes or min(classes) < LABEL_OFFSET:
        raise UserError('the shards in %s have labels from %s, expected 1..N (0 = background)'
                        % (directory, min(classes) if classes else 'none'))
    ordered = [classes.get(label, ('', '')) for label in range(LABEL_OFFSET, max(classes) + 1)]
    return build_manifest('computed from shards', ordered, splits)


def load_or_compute_manifest(directory, log=print):
    """The validated manifest of the shards in `directory`: manifest.json if present, else computed
    (`compute_manifest`) and cached there as manifest.json; if the folder is not writable the
    computed manifest is returned with a message that it will be computed again next time."""
    path = os.path.join(directory, MANIFEST_FILE)
    if os.path.exists(path):
        return read_manifest(path)
    manifest = validate_manifest(compute_manifest(directory, log), path)
    try:
        write_json(path, manifest)
        log('>> wrote %s (computed once from the shards)' % path)
    except OSError as e:
        log('>> note: cannot cache the computed manifest as %s (%s); it is computed again on '
            'every use. Make the folder writable, or copy the shards to a writable one'
            % (path, e.strerror or e))
    return manifest
