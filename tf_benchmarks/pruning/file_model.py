"""Which model a weights file holds, and the weights it stands for at inference: the model named by
`--model`, else the network description the file carries (a shipped model where it is one's), else
the shipped model whose variables the file fits (the originals' files); an AOFP tuned file's masked
filters are removed (so its widths are the masked model's). `resolve_model` is what `--model`
names, a weight file's description included."""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from tf_benchmarks.files import hdf5_io
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models.registry import MODELS, ModelSpec, from_description
from tf_benchmarks.models.user_models import resolve_model as resolve_named_model
from tf_benchmarks.network.input_spec import InputSpec, default_spec
from tf_benchmarks.pruning.surgery import remove_masked


@dataclasses.dataclass
class ModelFile:
    """A weights file read for inference: its model, the weights and widths after removing any
    masked filters, and the file's own widths (before that)."""
    path: str
    model: object
    weights: Dict[str, np.ndarray]
    deps: Tuple[int, ...]
    file_deps: Tuple[int, ...]
    masked: bool
    num_classes: int            # the file's logits
    input_spec: InputSpec       # the file's input (or the model's default)
    class_names: Optional[Tuple[str, ...]] = None  # the data set's classes, where the file has them


def _fit_problem(model, weight_file):
    """None if `weight_file` holds every variable of `model` at the file's widths with its shape
    (entries the model lacks are ignored, as `eval` does), else why not."""
    deps = weight_file.deps or model.default_deps
    try:
        deps = model.check_deps(deps)
    except UserError as e:
        return str(e)
    trace = model.trace(deps, model.file_num_classes(weight_file))
    _, report = hdf5_io.match_weights(trace.shapes, weight_file.weights)
    if report.mismatched:
        return '%d tensors have the wrong shape (%s: model %s, file %s)' % (
            len(report.mismatched), *report.mismatched[0])
    if report.missing:
        return 'it lacks %d of the model\'s variables (%s, ...)' % (len(report.missing),
                                                                 report.missing[0])
    return None


def resolve_model(text):
    """The ModelSpec `--model TEXT` names: a shipped model, a .py file (imported: the user named
    it), a .json description, an entry point, or a .hdf5/.h5 file's network description (read as
    data)."""
    if isinstance(text, ModelSpec):
        return text
    if text.endswith(('.hdf5', '.h5')):
        weight_file = hdf5_io.read_hdf5(text)
        if weight_file.network is None:
            raise UserError('--model %s: the file carries no network description (an original\'s '
                            'file, or one written before descriptions); pass the model\'s name or '
                            'its .py file' % text)
        return from_description(weight_file.network, text)
    return resolve_named_model(text)


def identify_model(weight_file, path, model_name=None):
    """The ModelSpec of a file: `model_name` (a name, file or ModelSpec, see resolve_model) if
    given (the file must fit it), else the file's network description, else the one shipped model
    it fits; a UserError naming the problem otherwise. Nothing the file says is imported."""
    if model_name is None and weight_file.network is not None:
        model = from_description(weight_file.network, '%s (its network)' % path)
        problem = _fit_problem(model, weight_file)
        if problem:
            raise UserError('%s does not fit the network it describes (%s): %s; the file is '
                            'damaged' % (path, model.name, problem))
        return model
    if model_name:
        model = resolve_model(model_name)
        problem = _fit_problem(model, weight_file)
        if problem:
            raise UserError('%s does not fit the model %s: %s. Pass the --model it was trained as, '
                            'or leave --model out to let the file\'s variables decide'
                            % (path, model.name, problem))
        return model
    fitting = [m for m in MODELS.values() if _fit_problem(m, weight_file) is None]
    if not fitting:
        raise UserError('%s is not a weights file of a known architecture: its variables (%d, e.g. '
                        '%s) and widths fit none of the models %s, and it carries no network '
                        'description; if it belongs to another architecture, pass --model with '
                        'that network (e.g. its .py file)'
                        % (path, len(weight_file.weights),
                           ', '.join(sorted(weight_file.weights)[:2]) or 'none',
                           ', '.join(sorted(MODELS))))
    return fitting[0]


def check_masks(model, deps, masks, path):
    """An AOFP tuned file's masks {layer: 0/1 vector} must each name the first layer of one of
    `model`'s channel groups, have one value per filter at `deps` and keep a filter; else a
    UserError naming the mask."""
    roots = {g.root for g in model.groups}
    for layer, mask in sorted(masks.items()):
        if layer not in roots:
            raise UserError('%s: mask base_mask_value%d names no layer %s searches (its channel '
                            'groups start at layers %s); the file is damaged or belongs to another '
                            'model' % (path, layer, model.name, _ranges(sorted(roots))))
        if len(mask) != deps[layer]:
            raise UserError('%s: mask base_mask_value%d does not fit %s at widths %s'
                            % (path, layer, model.name, list(deps)))
        if not (mask > 0.5).any():
            raise UserError('%s: mask base_mask_value%d removes every filter of layer %d'
                            % (path, layer, layer))


def _ranges(numbers):
    return ', '.join(map(str, numbers)) if len(numbers) <= 8 else '%s, ... %d' % (
        ', '.join(map(str, numbers[:6])), numbers[-1])


def model_of_file(path, model_name=None):
    """The ModelSpec of the weights file `path` (see identify_model)."""
    return identify_model(hdf5_io.read_hdf5(path), path, model_name)


def read_model_file(path, model_name=None):
    """Read a weights file as a ModelFile (a tuned file's masks applied by removing the filters)."""
    weight_file = hdf5_io.read_hdf5(path)
    model = identify_model(weight_file, path, model_name)
    file_deps = model.file_deps(weight_file)
    weights, deps = weight_file.weights, file_deps
    if weight_file.masks:
        check_masks(model, file_deps, weight_file.masks, path)
        weights, deps = remove_masked(model.trace(file_deps, model.file_num_classes(weight_file)),
                                      weights, weight_file.masks)
    return ModelFile(path, model, weights, tuple(deps), file_deps, bool(weight_file.masks),
                     model.file_num_classes(weight_file),
                     weight_file.input_spec or default_spec(model), weight_file.class_names)
