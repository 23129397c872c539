"""hdf5 weight files in the originals' format, so weights move between this project and the TF1 code.

One dataset per variable, keyed by the variable name with `/` replaced by `+` and a `:0` suffix
(`v0+cg+conv0+conv2d+kernel:0`), plus `deps` (int widths) and, in AOFP tuned files,
`base_mask_value{i}` (0/1 float masks), and, where the input is not the model's default,
`input_size` (int64 [1]), `input_mean` and `input_std` (float64 [3], pixel units), `network` (the
network description, network/description.py, as uint8 UTF-8 JSON bytes) and `class_names` (the
data set's class names, uint8 UTF-8 JSON bytes of a list of strings): numbers under names no
variable has, which the original code's loaders skip. Files are written to a temporary name and
renamed. Reading
takes top-level datasets of numbers stored in the file only: links, groups, virtual datasets and
external storage (which could point at other files) are refused.
"""

import dataclasses
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import MALFORMED_INPUT_ERRORS, UserError
from tf_benchmarks.files.atomic import replacing
from tf_benchmarks.network import description
from tf_benchmarks.network.input_spec import InputSpec

DEPS_KEY = 'deps'
MAX_WIDTH = 1 << 16  # filters of one layer; a wider `deps` entry is a damaged or hostile file
MASK_KEY_PREFIX = 'base_mask_value'
_MASK_KEY = re.compile(r'^%s(\d+)$' % MASK_KEY_PREFIX)
INPUT_KEYS = ('input_size', 'input_mean', 'input_std')
NETWORK_KEY = 'network'
CLASS_NAMES_KEY = 'class_names'
TEXT_KEYS = {NETWORK_KEY: description.MAX_BYTES, CLASS_NAMES_KEY: 1 << 20}  # bytes read at most
MAX_CLASS_NAME = 256
# Removed from both file keys and graph names before matching (as the original loaders do).
_NORMALIZE = [re.compile(p) for p in (r':0$', r'tower_\d+/', r'/ExponentialMovingAverage',
                                      r'^v\d+/')]


def encode_key(name):
    """Variable name -> hdf5 key: `/` -> `+`, with a `:0` suffix."""
    if not name.endswith(':0'):
        name += ':0'
    return name.replace('/', '+')


def decode_key(key):
    """hdf5 key -> variable name (without `:0`)."""
    name = key.replace('+', '/')
    return name[:-2] if name.endswith(':0') else name


def normalize_name(name):
    """Name used to match file entries with graph variables (`v0/cg/conv0/...:0` -> `cg/conv0/...`)."""
    for pattern in _NORMALIZE:
        name = pattern.sub('', name)
    return name


@dataclasses.dataclass
class WeightFile:
    """The contents of a weights file: variables by name (no `:0`), widths and AOFP masks."""
    weights: Dict[str, np.ndarray]
    deps: Optional[Tuple[int, ...]] = None
    masks: Dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    input_spec: Optional[InputSpec] = None  # None: the model's default input
    network: Optional[dict] = None          # the network description (None: an original's file)
    class_names: Optional[Tuple[str, ...]] = None


def _text_dataset(data):
    return np.frombuffer(data, dtype=np.uint8)


def save_hdf5(path, weights, deps=None, masks=None, input_spec=None, network=None,
              class_names=None):
    """Write weights (name -> array) plus optional deps, masks, input spec, network description
    and class names; temporary name, then rename. Not on the non-chief workers of a multi-worker
    run (they write nothing)."""
    if not workers.writes_files():
        return
    if network is not None:
        network = description.to_bytes(network)
    if class_names is not None:
        class_names = json.dumps([str(c) for c in class_names]).encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with replacing(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            for name, value in weights.items():
                f.create_dataset(encode_key(name), data=np.asarray(value))
            if deps is not None:
                f.create_dataset(DEPS_KEY, data=np.asarray(deps, dtype=np.int64))
            for layer, mask in sorted((masks or {}).items()):
                f.create_dataset(MASK_KEY_PREFIX + str(layer),
                                 data=np.asarray(mask, dtype=np.float32))
            if input_spec is not None:
                f.create_dataset('input_size', data=np.asarray([input_spec.image_size], np.int64))
                f.create_dataset('input_mean', data=np.asarray(input_spec.mean, np.float64))
                f.create_dataset('input_std', data=np.asarray(input_spec.std, np.float64))
            if network is not None:
                f.create_dataset(NETWORK_KEY, data=_text_dataset(network))
            if class_names is not None:
                f.create_dataset(CLASS_NAMES_KEY, data=_text_dataset(class_names))


_KINDS = {h5py.ExternalLink: 'a link to another file', h5py.SoftLink: 'a soft link',
          h5py.Group: 'a group'}


def _read_datasets(f, path):
    """Every top-level dataset of an open file, stored in the file itself and of numbers; links,
    groups, virtual datasets and external storage (which can point at other files) are refused."""
    raw = {}
    for key in f.keys():
        link = f.get(key, getlink=True)
        item = f.get(key) if isinstance(link, h5py.HardLink) else link
        if not isinstance(item, h5py.Dataset):
            problem = 'is %s' % _KINDS.get(type(item), 'a ' + type(item).__name__)
        elif item.is_virtual:
            problem = 'is a virtual dataset'
        elif item.external is not None:
            problem = 'is stored outside the file'
        elif item.dtype.kind not in 'biuf':
            problem = 'has dtype %s' % item.dtype
        elif key in TEXT_KEYS and (item.dtype != np.uint8 or item.ndim != 1 or
                                   item.size > TEXT_KEYS[key]):
            problem = 'is not UTF-8 text of at most %d bytes (a 1-D uint8 dataset)' % TEXT_KEYS[key]
        else:
            raw[key] = np.asarray(item)
            continue
        raise UserError('%s: entry %r %s; a weights file holds only datasets of numbers '
                        'stored in the file, so it is not read' % (path, key, problem))
    return raw


def read_hdf5(path):
    """Read a weights file into a WeightFile; a missing or unreadable file is a UserError, and so
    is an entry that is not a plain dataset of numbers in the file (see _read_datasets), a dataset
    holding NaN or Inf, widths (`deps`) that are not whole numbers in 1..MAX_WIDTH, and a mask that
    is not a 1-D 0/1 vector or removes every filter of its layer."""
    if not os.path.exists(path):
        raise UserError('weights file %s does not exist' % path)
    try:
        with h5py.File(path, 'r') as f:
            raw = _read_datasets(f, path)
    except MALFORMED_INPUT_ERRORS as e:
        raise UserError('cannot read %s as an hdf5 weights file (%s); is it a complete file '
                        'written by this project or the original code?'
                        % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    result = WeightFile(weights={})
    result.input_spec = _input_spec(raw, path)
    for key, value in raw.items():
        mask = _MASK_KEY.match(key)
        if key in INPUT_KEYS:
            continue
        if key == NETWORK_KEY:
            result.network = description.from_bytes(value.tobytes(), '%s (its network)' % path)
        elif key == CLASS_NAMES_KEY:
            result.class_names = _class_names(value.tobytes(), path)
        elif key == DEPS_KEY:
            result.deps = _deps(value, path)
        elif mask:
            if len(mask.group(1)) > 6:
                raise _bad_entry(path, key, 'names no layer of any model')
            result.masks[int(mask.group(1))] = _mask(value, key, path)
        else:
            _check_finite(path, key, value)
            result.weights[decode_key(key)] = value
    return result


def _check_finite(path, key, value):
    """A UserError naming the dataset if it holds NaN or Inf (a diverged or damaged file)."""
    if value.dtype.kind == 'f' and not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))
        raise UserError('%s: dataset %r holds %d non-finite values (NaN or Inf; the first at index '
                        '%s); the file is from a run that diverged or is damaged. Pass a file of '
                        'finite weights, e.g. an earlier one of that run'
                        % (path, key, len(bad), tuple(int(i) for i in bad[0])))


def _bad_entry(path, key, problem):
    return UserError('%s: %s %s, so the file is damaged or was not written by this project or the '
                     'original code; pass another weights file' % (path, key, problem))


def _deps(value, path):
    """The widths: a 1-D dataset of whole numbers (integer or float dtype) in 1..MAX_WIDTH."""
    if value.ndim != 1 or value.dtype.kind not in 'iuf':
        raise _bad_entry(path, DEPS_KEY, 'is a %s array of shape %s, not a list of widths'
                         % (value.dtype, value.shape))
    wide = value.astype(np.float64)
    bad = ~np.isfinite(wide) | (wide != np.round(wide)) | (wide < 1) | (wide > MAX_WIDTH)
    if bad.any():
        i = int(np.argmax(bad))
        raise _bad_entry(path, DEPS_KEY, 'gives layer %d the width %r; widths are whole numbers '
                         'of filters from 1 to %d' % (i, value[i].item(), MAX_WIDTH))
    return tuple(int(d) for d in wide)


def _class_names(data, path):
    """A list of strings, from UTF-8 JSON bytes."""
    try:
        names = json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError) as e:
        raise _bad_entry(path, CLASS_NAMES_KEY, 'is not UTF-8 JSON (%s)' % type(e).__name__)
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME and n.isprintable()
            for n in names):
        raise _bad_entry(path, CLASS_NAMES_KEY, 'is not a list of class names (printable strings '
                         'of 1 to %d characters)' % MAX_CLASS_NAME)
    return tuple(names)


def _input_spec(raw, path):
    """The file's InputSpec from its input keys (all three or none), or None."""
    present = [k for k in INPUT_KEYS if k in raw]
    if not present:
        return None
    if len(present) != len(INPUT_KEYS):
        raise _bad_entry(path, present[0], 'comes without %s'
                         % ', '.join(k for k in INPUT_KEYS if k not in raw))
    size, mean, std = (raw[k] for k in INPUT_KEYS)
    try:
        if size.shape != (1,) or size.dtype.kind not in 'iu' or mean.shape != (3,) or \
                std.shape != (3,) or mean.dtype.kind != 'f' or std.dtype.kind != 'f':
            raise ValueError('input_size must be one integer, input_mean and input_std 3 floats')
        return InputSpec(int(size[0]), tuple(float(v) for v in mean),
                         tuple(float(v) for v in std))
    except ValueError as e:
        raise _bad_entry(path, 'input_size/input_mean/input_std', 'do not describe an input (%s)'
                         % e)


def _mask(value, key, path):
    """An AOFP mask: a 1-D vector of values in [0, 1] (0 removes the filter, 1 keeps it)."""
    if value.ndim != 1:
        raise _bad_entry(path, key, 'has shape %s, not one value per filter' % (value.shape,))
    mask = value.astype(np.float32)
    if not (np.isfinite(mask) & (mask >= 0) & (mask <= 1)).all():
        raise _bad_entry(path, key, 'holds values outside 0..1 (a mask keeps filters with 1 and '
                         'removes them with 0)')
    if not (mask > 0.5).any():
        raise UserError('%s: mask %s removes every filter of layer %s; a tuned file keeps at least '
                        'one filter per layer' % (path, key, key[len(MASK_KEY_PREFIX):]))
    return mask


@dataclasses.dataclass
class LoadReport:
    matched: List[str]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, tuple, tuple]]

    def summary(self):
        return '%d tensors loaded, %d missing, %d unexpected, %d with a wrong shape' % (
            len(self.matched), len(self.missing), len(self.unexpected), len(self.mismatched))


def match_weights(shapes, weights):
    """Match graph variables (name -> shape) with file weights (name -> array) by normalized name.

    Returns (assignments: graph name -> array, LoadReport).
    """
    by_norm = {}
    for name, value in weights.items():
        by_norm[normalize_name(name)] = (name, value)
    assignments, report = {}, LoadReport([], [], [], [])
    used = set()
    for name, shape in shapes.items():
        norm = normalize_name(name)
        if norm not in by_norm:
            report.missing.append(name)
            continue
        used.add(norm)
        file_name, value = by_norm[norm]
        if tuple(value.shape) != tuple(shape):
            report.mismatched.append((name, tuple(shape), tuple(value.shape)))
            continue
        assignments[name] = value
        report.matched.append(name)
    report.unexpected = sorted(by_norm[n][0] for n in by_norm if n not in used)
    return assignments, report


def _listed(names, limit=8):
    return ', '.join(names[:limit]) + (' and %d more' % (len(names) - limit)
                                       if len(names) > limit else '')


def check_report(report, source, allow_missing=False, allow_unexpected=True):
    """Raise a UserError naming the problem entries if the load is not clean enough."""
    if report.mismatched:
        lines = ['  %s: graph %s, file %s' % m for m in report.mismatched[:10]]
        raise UserError('%s does not fit this model: %d tensors have the wrong shape:\n%s\n'
                        'Rebuild the model with the widths (deps) stored in that file, or pass a '
                        'file of this architecture.' % (source, len(report.mismatched),
                                                         '\n'.join(lines)))
    problems = []
    if report.missing and not allow_missing:
        problems.append('it lacks %d of the model\'s variables (%s)'
                        % (len(report.missing), _listed(report.missing)))
    if report.unexpected and not allow_unexpected:
        problems.append('it has %d entries the model does not have (%s)'
                        % (len(report.unexpected), _listed(report.unexpected)))
    if problems:
        raise UserError('%s does not fit this model: %s. It belongs to another architecture or is '
                        'incomplete; pass the right file (--allow_partial_start starts from the '
                        'entries that match, on purpose)' % (source, '; '.join(problems)))


def check_weights_fit(shapes, weights, source, partial=False):
    """Before any work starts: `weights` must hold every variable of `shapes` (name -> shape) with
    its shape and nothing else (unless `partial`); raises a UserError naming the entries."""
    _, report = match_weights(shapes, weights)
    check_report(report, source, allow_missing=partial, allow_unexpected=partial)
