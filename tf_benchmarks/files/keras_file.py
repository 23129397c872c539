"""Keras model files read as data: a `.keras` zip (config.json, model.weights.h5) or a legacy `.h5`
(the `model_config` attribute, `model_weights` groups), without Keras and without running anything
in them: the config is JSON, the weights numeric datasets stored in the file itself."""

import dataclasses
import io
import json
import os
import zipfile
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np

from tf_benchmarks.core.errors import MALFORMED_INPUT_ERRORS, UserError

MAX_CONFIG_BYTES = 64 << 20    # a config is kilobytes to a few megabytes
MAX_WEIGHTS_BYTES = 4 << 30    # the weights file inside a .keras zip
MAX_OBJECTS = 200000           # groups and datasets walked in one weights file
MAX_DEPTH = 64                 # nesting of groups


class _Damaged(Exception):
    """What is wrong with the file, for the one UserError that names it."""


@dataclasses.dataclass
class KerasFile:
    """A Keras model file's config (the model's JSON: class_name, config) and its weights.

    `.keras`: `weights[(model names..., layer name)]` is the layer's arrays in Keras' order (the
    path of names from the top model's layers down). Legacy `.h5`: `groups[top-level layer name]`
    is [(weight name, array)] in the file's `weight_names` order (a nested model's group holds all
    of its layers' weights, named `<layer>/<weight>`)."""
    path: str
    format: str                      # 'keras' or 'h5'
    config: dict
    keras_version: str
    weights: Dict[Tuple[str, ...], List[np.ndarray]] = dataclasses.field(default_factory=dict)
    groups: Dict[str, List[Tuple[str, np.ndarray]]] = dataclasses.field(default_factory=dict)

    def layer_weights(self, path):
        """The arrays of the layer at `path` (a tuple of names, top model's layer first), in
        Keras' order; [] for a layer without weights."""
        if self.format == 'keras':
            return list(self.weights.get(tuple(path), []))
        entries = self.groups.get(path[0], [])
        if len(path) == 1:
            return [a for _, a in entries]
        return [a for name, a in entries
                if len(name.split('/')) >= 2 and name.split('/')[-2] == path[-1]]


def read_keras_file(path):
    """Read a `.keras` or legacy `.h5` Keras model file; a UserError naming the file and the
    problem for anything that is not a plain model file (see the module docstring)."""
    if not os.path.isfile(path):
        raise UserError('Keras model file %s does not exist' % path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        if h5py.is_hdf5(path):
            return _read_legacy(path)
        raise _Damaged('neither a .keras zip nor an hdf5 file')
    except _Damaged as e:
        problem = str(e)
    except MALFORMED_INPUT_ERRORS + (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        problem = '%s: %s' % (type(e).__name__, (str(e).splitlines() or [''])[0][:200])
    raise UserError('cannot import %s as a Keras model (%s); pass a model saved by '
                    'model.save("name.keras") or model.save("name.h5")' % (path, problem))


# -- .keras -------------------------------------------------------------------------------------
def _member(zf, name, limit):
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise _Damaged('%s holds %d bytes, more than %d' % (name, info.file_size, limit))
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) != info.file_size:
        raise _Damaged('%s is not the size the zip says' % name)
    return data


def _read_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in names:
            parts = name.replace('\\', '/').split('/')
            if name.startswith(('/', '\\')) or '..' in parts or ':' in parts[0]:
                raise _Damaged('member %r has an absolute or parent path' % name[:200])
        if len(set(names)) != len(names):
            raise _Damaged('members with the same name')
        for needed in ('config.json', 'model.weights.h5'):
            if needed not in names:
                raise _Damaged('no %s in the zip (a .keras file has config.json, '
                               'model.weights.h5 and metadata.json)' % needed)
        config = _json(_member(zf, 'config.json', MAX_CONFIG_BYTES), 'config.json')
        version = ''
        if 'metadata.json' in names:
            metadata = _json(_member(zf, 'metadata.json', 1 << 20), 'metadata.json')
            version = str(metadata.get('keras_version', '')) if isinstance(metadata, dict) else ''
        data = _member(zf, 'model.weights.h5', MAX_WEIGHTS_BYTES)
    result = KerasFile(path, 'keras', _model_config(config), version)
    with h5py.File(io.BytesIO(data), 'r') as f:
        counter = [0]
        _walk_keras(f, (), result.weights, counter, 0, top=True)
    return result


def _json(data, what):
    try:
        return json.loads(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Damaged('%s is not JSON (%s)' % (what, str(e)[:100]))


def _model_config(config):
    if not isinstance(config, dict) or not isinstance(config.get('class_name'), str) or \
            not isinstance(config.get('config'), dict):
        raise _Damaged('the model config is not an object with class_name and config')
    return config


def _child(group, key):
    """group[key] if it is a hard link to a group or a plain numeric dataset stored in the file;
    links to elsewhere, virtual datasets and external storage are refused."""
    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise _Damaged('entry %s/%s is a %s; a weights file holds only groups and datasets'
                       % (group.name, key, type(link).__name__))
    item = group[key]
    if isinstance(item, h5py.Dataset):
        if item.is_virtual:
            raise _Damaged('dataset %s is virtual' % item.name)
        if item.external is not None:
            raise _Damaged('dataset %s is stored outside the file' % item.name)
        if item.dtype.kind not in 'biuf':
            raise _Damaged('dataset %s has dtype %s, not numbers' % (item.name, item.dtype))
    elif not isinstance(item, h5py.Group):
        raise _Damaged('entry %s is a %s' % (item.name, type(item).__name__))
    return item


def _array(dataset):
    value = np.asarray(dataset)
    if value.dtype.kind == 'f' and not np.isfinite(value).all():
        raise _Damaged('dataset %s holds NaN or Inf' % dataset.name)
    return value


def _string_attr(obj, name):
    value = obj.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    if not isinstance(value, str):
        raise _Damaged('%s has no %s string attribute' % (obj.name, name))
    return value


def _count(counter, depth):
    counter[0] += 1
    if counter[0] > MAX_OBJECTS or depth > MAX_DEPTH:
        raise _Damaged('more than %d objects or %d levels of groups' % (MAX_OBJECTS, MAX_DEPTH))


def _walk_keras(group, path, out, counter, depth, top=False):
    """Keras 3's layout: a layer is a group with `vars` (datasets 0, 1, ..., attribute `name`: the
    layer's name) and, for a model, `layers` (its layers' groups)."""
    _count(counter, depth)
    names = set(group.keys())
    if 'vars' in names:
        variables = _child(group, 'vars')
        if not isinstance(variables, h5py.Group):
            raise _Damaged('%s is not a group' % variables.name)
        keys = sorted(variables.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if any(not k.isdigit() for k in keys):
            raise _Damaged('%s holds entries that are not numbered variables' % variables.name)
        arrays = []
        for key in keys:
            _count(counter, depth + 1)
            item = _child(variables, key)
            if not isinstance(item, h5py.Dataset):
                raise _Damaged('%s is not a dataset' % item.name)
            arrays.append(_array(item))
        if not top:
            name = _string_attr(variables, 'name')
            path = path + (name,)
            if path in out:
                raise _Damaged('two layers named %s' % '/'.join(path))
            out[path] = arrays
    if 'layers' in names:
        layers = _child(group, 'layers')
        if not isinstance(layers, h5py.Group):
            raise _Damaged('%s is not a group' % layers.name)
        for key in layers.keys():
            child = _child(layers, key)
            if isinstance(child, h5py.Group):
                _walk_keras(child, path, out, counter, depth + 1)


# -- legacy .h5 -----------------------------------------------------------------------------------
def _read_legacy(path):
    with h5py.File(path, 'r') as f:
        if 'model_config' not in f.attrs:
            raise _Damaged('an hdf5 file without a model_config attribute (a weights-only file, or '
                           'not Keras\'); save the whole model')
        text = _string_attr(f, 'model_config')
        if len(text) > MAX_CONFIG_BYTES:
            raise _Damaged('a model_config of more than %d bytes' % MAX_CONFIG_BYTES)
        config = _model_config(_json(text.encode('utf-8'), 'model_config'))
        version = f.attrs.get('keras_version', '')
        version = version.decode() if isinstance(version, bytes) else str(version)
        result = KerasFile(path, 'h5', config, version)
        if 'model_weights' not in f:
            raise _Damaged('no model_weights group')
        weights = _child(f, 'model_weights')
        if not isinstance(weights, h5py.Group):
            raise _Damaged('model_weights is not a group')
        counter = [0]
        for layer in weights.keys():
            group = _child(weights, layer)
            _count(counter, 1)
            if not isinstance(group, h5py.Group):
                raise _Damaged('model_weights/%s is not a group' % layer)
            names = group.attrs.get('weight_names', [])
            entries = []
            for name in np.asarray(names).reshape(-1).tolist() if len(names) else []:
                if isinstance(name, bytes):
                    name = name.decode('utf-8', 'replace')
                if not isinstance(name, str):
                    raise _Damaged('model_weights/%s has weight names that are not text' % layer)
                item = group
                for part in name.split('/'):
                    _count(counter, 2)
                    if not isinstance(item, h5py.Group) or part not in item:
                        raise _Damaged('model_weights/%s lacks its weight %s' % (layer, name))
                    item = _child(item, part)
                if not isinstance(item, h5py.Dataset):
                    raise _Damaged('model_weights/%s/%s is not a dataset' % (layer, name))
                entries.append((name[:-2] if name.endswith(':0') else name, _array(item)))
            result.groups[layer] = entries
    return result


def input_shape_of(config) -> Optional[tuple]:
    """The batch shape an InputLayer config records (Keras 3 `batch_shape`, Keras 2
    `batch_input_shape`), or None."""
    for key in ('batch_shape', 'batch_input_shape'):
        if isinstance(config.get(key), list):
            return tuple(config[key])
    return None
