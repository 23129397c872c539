"""C-SGD's clusters file, {layer index: [[filter indices], ...]}, in a format that carries no code:
JSON, `{"format": "clusters-v1", "layers": {"0": [[0, 3], [1, 2]], ...}}`, one layer a line.

Read by content: that JSON, or the original's `*_eqcls.npy` (a dict pickled by np.save(...,
allow_pickle=True)) through the restricted unpickler of tf_benchmarks/files/safe_pickle.py, never
np.load(allow_pickle=True). Only the structure is checked here, not that the indices fit a model.
"""

import io
import json
import os

import numpy as np
from numpy.lib import format as npy_format

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import MALFORMED_INPUT_ERRORS, UserError
from tf_benchmarks.files.atomic import write_text
from tf_benchmarks.files.safe_pickle import RefusedGlobal, safe_load

FORMAT = 'clusters-v1'
_NPY_MAGIC = b'\x93NUMPY'


class _Invalid(ValueError):
    """The contents are not clusters; the message says why."""


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def save_clusters(path, plans):
    """Write plans {layer: [[filter indices], ...]} as JSON to `path` (temporary name, then rename);
    plans that are not such a dict raise ValueError."""
    plans = _normalize(plans)
    if not workers.writes_files():  # a non-chief worker reads the chief's file
        return
    body = ',\n'.join('  "%d": %s' % (layer, json.dumps(clusters))
                      for layer, clusters in sorted(plans.items()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text(path, '{"format": "%s", "layers": {%s}}\n' % (FORMAT, body and '\n%s\n' % body))


def load_clusters(path):
    """Read a clusters file (this project's JSON or the original's pickled .npy dict) into
    {int layer: [[int filter index, ...], ...]}; anything else is a UserError naming the file."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
        if raw.startswith(_NPY_MAGIC):
            return _normalize(_read_original_npy(raw))
        if raw.lstrip().startswith(b'{'):
            return _normalize(_read_json(raw))
        raise _Invalid('neither JSON nor a .npy file')
    except RefusedGlobal as e:
        reason = 'a pickle that asks to load %s, which a clusters file never contains; nothing ' \
                 'of it was run' % e.name
    except _Invalid as e:
        reason = str(e)
    except MALFORMED_INPUT_ERRORS as e:  # OSError, or what hostile bytes make a parser raise
        reason = '%s: %s' % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else '')
    raise UserError('%s is not a valid clusters file (%s); delete it to recompute the clusters, or '
                    'pass a clusters file written by this project or the original C-SGD code'
                    % (path, reason))


def _read_json(raw):
    try:
        content = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Invalid('bad JSON: %s' % e)
    if not isinstance(content, dict) or content.get('format') != FORMAT:
        raise _Invalid('JSON without "format": "%s"' % FORMAT)
    return content.get('layers')


def _read_original_npy(raw):
    """The original's np.save of a dict: a 0-d object array whose payload is a pickle."""
    f = io.BytesIO(raw)
    try:
        version = npy_format.read_magic(f)
        read_header = {(1, 0): npy_format.read_array_header_1_0,
                       (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise _Invalid('.npy format version %d.%d' % version)
        shape, _, dtype = read_header(f)
    except MALFORMED_INPUT_ERRORS as e:
        raise _Invalid('bad .npy header: %s' % e)
    if dtype != np.dtype(object) or shape != ():
        raise _Invalid('a .npy array of %s %s, not a pickled dict of clusters' % (dtype, shape))
    array = safe_load(f, encoding='latin1')
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def _index(value, what):
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise _Invalid('%s %s is not a non-negative integer' % (what, _short(value)))
    return int(value)


def _sequence(value, what):
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)
    if not isinstance(value, (list, tuple)) or not value:
        raise _Invalid('%s is %s, not a non-empty list' % (what, _short(value)))
    return value


def _normalize(plans):
    """{layer: [[index, ...], ...]}: int layers and indices, non-empty clusters, no index twice."""
    if not isinstance(plans, dict):
        raise _Invalid('holds %s, not a dict of layers' % type(plans).__name__)
    result = {}
    for key, clusters in plans.items():
        layer = _index(key, 'layer')
        if layer in result:
            raise _Invalid('layer %d given twice' % layer)
        what = 'layer %d' % layer
        result[layer] = [[_index(i, what + ' filter') for i in _sequence(c, what + ' cluster')]
                         for c in _sequence(clusters, what)]
        flat = [i for cluster in result[layer] for i in cluster]
        if len(set(flat)) != len(flat):
            raise _Invalid('%s lists a filter in two places' % what)
    return result
