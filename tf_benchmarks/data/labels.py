"""The classes of a data set and the check that every record's label is one of them, before any
training: a label outside the classes would crash the loss (or, for `vc`'s unused 11th logit, train
silently on a class that does not exist).

The classes are those of `labels.txt` next to the records (`0:airplane` a line, indices in order, as
slim's converter writes it), or CIFAR-10's ten in a folder without one. Labels are read from the
Example protos in NumPy (no image decoding, nothing added to any graph) and checked once per file
version (path, size and mtime).
"""

import os

import tensorflow as tf
from google.protobuf.message import DecodeError

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import records

_MAX_LABELS_FILE = 1 << 20
_CHECKED = set()
_RECREATE = 're-create the data with datasets/download_and_convert_cifar10.py --overwrite'


def _bad_labels_file(path, problem):
    return UserError('%s is not a labels file (%s); it lists one class a line as INDEX:NAME from '
                     '0:NAME on; %s' % (path, problem, _RECREATE))


def _read_text(path):
    try:
        with open(path, 'rb') as f:
            raw = f.read(_MAX_LABELS_FILE + 1)
    except OSError as e:
        raise _bad_labels_file(path, e.strerror or type(e).__name__)
    if len(raw) > _MAX_LABELS_FILE:
        raise _bad_labels_file(path, 'larger than %d bytes' % _MAX_LABELS_FILE)
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as e:
        raise _bad_labels_file(path, 'not UTF-8 text: %s' % e.reason)


def read_class_names(path):
    """The class names of a labels file (`0:airplane` a line); a UserError if it is malformed."""
    names = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        index, colon, name = line.partition(':')
        if not colon or index.strip() != str(len(names)) or not name.strip():
            shown = line if len(line) <= 40 else line[:37] + '...'
            raise _bad_labels_file(path, 'line %d is %s, expected %d:NAME'
                                   % (number, ascii(shown), len(names)))
        names.append(name.strip())
    if not names:
        raise _bad_labels_file(path, 'it lists no class')
    return tuple(names)


def class_names(data_dir):
    """The classes of the data in `data_dir`: its labels.txt, else CIFAR-10's."""
    path = os.path.join(data_dir, records.LABELS_FILE)
    return read_class_names(path) if os.path.lexists(path) else records.CLASS_NAMES


def _record_label(serialized, index, path):
    """The one integer label of a serialized Example, or a UserError naming the record."""
    try:
        feature = tf.train.Example.FromString(serialized).features.feature.get(records.LABEL_KEY)
    except DecodeError:
        raise UserError('record %d of %s is not a tf.train.Example; %s' % (index, path, _RECREATE))
    values = feature.int64_list.value if feature is not None else ()
    if feature is None or feature.WhichOneof('kind') != 'int64_list' or len(values) != 1:
        raise UserError('record %d of %s has no integer label (%s must hold one integer); %s'
                        % (index, path, records.LABEL_KEY, _RECREATE))
    return values[0]


def check_labels(path, classes):
    """Every record of the tfrecord file `path` has one integer label in 0..len(classes)-1; else a
    UserError naming the file, the record index and the label."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, len(classes))
    if key in _CHECKED:
        return
    try:
        for index, serialized in enumerate(tf.compat.v1.io.tf_record_iterator(path)):
            label = _record_label(serialized, index, path)
            if not 0 <= label < len(classes):
                raise UserError('record %d of %s has the label %d, but the data set has %d classes '
                                '(labels 0..%d, from %s); %s'
                                % (index, path, label, len(classes), len(classes) - 1,
                                   records.LABELS_FILE, _RECREATE))
    except tf.errors.OpError as e:
        raise UserError('%s is corrupt (%s); %s' % (path, e.message.splitlines()[0], _RECREATE))
    _CHECKED.add(key)


def check_data_labels(data_dir):
    """check_labels on each split present in `data_dir`, with the classes of its labels.txt."""
    classes = class_names(data_dir)
    for split in records.SPLIT_FILES:
        path = records.find_split(data_dir, split)
        if path is not None:
            check_labels(path, classes)
