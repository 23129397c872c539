"""Models beyond the shipped ones, as `--model` names them: a user's Python file (`net.py`, its
trusted code, imported only because the command line names it), a package's entry point (group
`tf_benchmarks.models`, loaded only for a name no shipped model has), or a network description
file (`net.json`, data: nothing runs). Each becomes a ModelSpec that replays its description."""

import importlib.metadata
import importlib.util
import os
import re
import sys

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models.registry import MODELS, from_description
from tf_benchmarks.network import description

ENTRY_POINT_GROUP = 'tf_benchmarks.models'
DEFAULT_NUM_CLASSES = 10
DEFAULT_IMAGE_SIZE = 32
FILE_HELP = ('a Python file defines add_inference(cnn, deps, num_classes) and DEFAULT_DEPS (and '
             'optionally NUM_CLASSES, IMAGE_SIZE, NAME); see docs/own-network.md')


def is_model_file(text):
    return text.endswith(('.py', '.json'))


def _name_from(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r'[^A-Za-z0-9_.-]', '_', stem)[:64] or 'net'


def spec_from_definition(obj, source, default_name):
    """The ModelSpec of an object (module) defining add_inference and DEFAULT_DEPS, through its
    description: the object's code runs here, to trace it, and never again."""
    add_inference = getattr(obj, 'add_inference', None)
    deps = getattr(obj, 'DEFAULT_DEPS', None)
    if not callable(add_inference) or deps is None:
        raise UserError('%s defines no %s; %s' % (source, 'add_inference function'
                                                  if not callable(add_inference)
                                                  else 'DEFAULT_DEPS', FILE_HELP))
    try:
        deps = [int(d) for d in deps]
    except (TypeError, ValueError):
        raise UserError('%s: DEFAULT_DEPS must be a list of widths (whole numbers), got %r'
                        % (source, deps))
    if not deps or min(deps) < 1:
        raise UserError('%s: DEFAULT_DEPS must give every conv layer at least one filter' % source)
    name = getattr(obj, 'NAME', default_name)
    size = getattr(obj, 'IMAGE_SIZE', DEFAULT_IMAGE_SIZE)
    classes = getattr(obj, 'NUM_CLASSES', DEFAULT_NUM_CLASSES)
    for what, value in (('IMAGE_SIZE', size), ('NUM_CLASSES', classes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError('%s: %s must be a positive whole number, got %r' % (source, what, value))
    if not isinstance(name, str) or not re.match(r'^[A-Za-z0-9_.-]{1,64}$', name):
        raise UserError('%s: NAME must be 1 to 64 letters, digits, _, - and ., got %r'
                        % (source, name))
    if name in MODELS:
        raise UserError('%s: NAME %s is a shipped model\'s; give your network another NAME'
                        % (source, name))
    try:
        desc = description.describe(add_inference, deps, classes, name, (size, size, 3))
    except UserError:
        raise
    except Exception as e:  # the user's code, traced: any failure is theirs to see in one line
        raise UserError('%s: add_inference failed while it was traced: %s: %s'
                        % (source, type(e).__name__, e))
    return from_description(desc, source)


def load_python_file(path):
    """Import the user's file `path` (their code, named on the command line) -> ModelSpec."""
    if not os.path.isfile(path):
        raise UserError('--model %s: no such file; %s' % (path, FILE_HELP))
    module_name = 'tf_benchmarks_user_model_%s' % re.sub(r'\W', '_', _name_from(path))
    spec = importlib.util.spec_from_file_location(module_name, os.path.abspath(path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except Exception as e:  # the user's code: any failure is theirs to see in one line
        raise UserError('--model %s: importing it failed: %s: %s' % (path, type(e).__name__, e))
    finally:
        sys.modules.pop(module_name, None)
    return spec_from_definition(module, path, _name_from(path))


def load_description_file(path):
    """A network description file (`.json`) -> ModelSpec; it is data, nothing runs."""
    if not os.path.isfile(path):
        raise UserError('--model %s: no such file' % path)
    return from_description(description.read_file(path), path)


def entry_point_names():
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_entry_point(name):
    """The model a package registers under `name` in the entry point group, or None."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as e:  # an installed package's code
                raise UserError('--model %s: loading the entry point %s failed: %s: %s'
                                % (name, ep.value, type(e).__name__, e))
            return spec_from_definition(obj, 'entry point %s (%s)' % (name, ep.value), name)
    return None


def resolve_model(text):
    """The ModelSpec `--model` names: a shipped model, a .py file, a .json description, or an
    entry point; a UserError listing the choices otherwise."""
    if text in MODELS:
        return MODELS[text]
    if text.endswith('.py'):
        return load_python_file(text)
    if text.endswith('.json'):
        return load_description_file(text)
    model = load_entry_point(text) if re.match(r'^[A-Za-z0-9_.-]+$', text) else None
    if model is not None:
        return model
    extra = [n for n in entry_point_names() if n not in MODELS]  # shipped names come first
    raise UserError('unknown model %r; known models: %s%s, or a network of your own: a .py file '
                    '(add_inference and DEFAULT_DEPS), a .json or .hdf5 file carrying a network '
                    'description' % (text, ', '.join(sorted(MODELS)),
                                     ''.join(', ' + n for n in extra)))
