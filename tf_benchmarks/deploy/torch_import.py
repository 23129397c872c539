"""`import FILE.pth --out FILE.hdf5`: torchvision's ResNet-50 state dict (read by
files.torch_checkpoint, without torch and without running code) as an sres50 weight file.

Names follow resnet50_model.torchvision_names (`num_batches_tracked` dropped), conv kernels go from
OIHW to HWIO and `fc.weight` is transposed. The widths (`deps`) and the number of classes are read
from the tensors' shapes, so a torchvision-layout file at reduced widths imports too; a block's last
1x1 takes its stage's projection width (their outputs are added), so a file whose tied layers
differ shows those tensors as mis-shaped. Every missing, extra or mis-shaped tensor is named in
one error before anything is written. The file records the input torchvision's weights expect:
224x224 images normalized with ImageNet's mean and std (`--image_size` / `--normalization` to record
another), so `eval`, training and `export` of it feed the network what torchvision does.
"""

import os

import numpy as np

from tf_benchmarks.core.errors import UserError, cannot_write_message
from tf_benchmarks.files import hdf5_io, torch_checkpoint
from tf_benchmarks.models import resnet50_model
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.network.input_spec import TORCHVISION, InputSpec, spec_with

MODEL = 'sres50'


def import_torch_file(path, out, model_name=None, log=print, image_size=None, normalization=None):
    """Read `path` (a .pth state dict of torchvision's ResNet-50 layout), check every tensor, and
    write `out`, an ordinary weight file with `deps` and its input (torchvision's, unless
    `image_size` / `normalization` name another); returns (deps, num_classes)."""
    model = get_model(model_name or MODEL)
    if model.name != MODEL:
        raise UserError('import reads torchvision\'s ResNet-50 layout into %s; --model %s is not '
                        'that model (leave --model out or pass --model %s)'
                        % (MODEL, model.name, MODEL))
    if os.path.isdir(out):
        raise UserError('--out %s is a directory; name the weights file to write' % out)
    checkpoint = torch_checkpoint.open_checkpoint(path)
    shapes = {name: t.shape for name, t in checkpoint.tensors.items()}
    deps, num_classes = file_widths(shapes, model)
    check_tensors(path, checkpoint.tensors, torch_shapes(model, deps, num_classes))
    weights = to_sres50(checkpoint.read(resnet50_model.torchvision_names()))
    spec = spec_with(InputSpec(model.image_size, *TORCHVISION), image_size,
                     normalization)
    write_weight_file(out, weights, deps, spec)
    log('imported %s (%s format, %d tensors) into %s: sres50 at widths %s, %d classes, input %s'
        % (path, 'legacy' if checkpoint.legacy else 'zip', len(weights), out, list(deps),
           num_classes, spec.describe()))
    return deps, num_classes


def write_weight_file(out, weights, deps, input_spec=None):
    """The imported weight file: sres50's variables, `deps` and the input (whole or not at all)."""
    try:
        hdf5_io.save_hdf5(out, weights, deps, input_spec=input_spec,
                          network=get_model(MODEL).network)
    except OSError as e:
        raise UserError(cannot_write_message(out, e.strerror or e)) from None


def file_widths(shapes, model):
    """(deps, num_classes) from torch tensor shapes (name -> shape): each conv's output channels
    (its BN's size where the kernel is missing or not 4-D, the model's default where both are),
    tied layers given their group root's width; the classes from `fc`, else the model's."""
    deps = list(model.default_deps)
    for i, conv, bn in resnet50_model.torchvision_layers():
        kernel, scale = shapes.get(conv + '.weight'), shapes.get(bn + '.weight')
        if kernel is not None and len(kernel) == 4:
            deps[i] = max(1, kernel[0])
        elif scale is not None and len(scale) == 1:
            deps[i] = max(1, scale[0])
    for group in model.groups:
        for member in group.members:
            deps[member] = deps[group.root]
    fc = shapes.get('fc.weight') or shapes.get('fc.bias') or (model.num_classes,)
    return model.check_deps(deps), max(1, fc[0])


def torch_shapes(model, deps, num_classes):
    """{torchvision name: the shape torch stores it in} for `model` at `deps` and `num_classes`."""
    variables = model.trace(deps, num_classes).variables
    shapes = {}
    for theirs, ours in resnet50_model.torchvision_names().items():
        shape = tuple(variables[ours].shape)
        shapes[theirs] = _to_torch_layout(shape)
    return shapes


def _to_torch_layout(shape):
    """HWIO -> OIHW, [in, out] -> [out, in], vectors as they are."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape))


def _dropped(name):
    """torchvision's BN counters, which have no TF counterpart."""
    bns = {bn for _, _, bn in resnet50_model.torchvision_layers()}
    module, _, tensor = name.rpartition('.')
    return tensor == 'num_batches_tracked' and module in bns


def check_tensors(path, tensors, expected):
    """One UserError naming every missing, extra, mis-shaped or non-floating tensor of `tensors`
    (name -> torch_checkpoint.Tensor) against `expected` (name -> torch shape)."""
    missing = [n for n in expected if n not in tensors]
    extra = [n for n in tensors if n not in expected and not _dropped(n)]
    wrong = ['%s %s, expected %s' % (n, _shape(tensors[n].shape), _shape(expected[n]))
             for n in expected if n in tensors and tuple(tensors[n].shape) != expected[n]]
    wrong += ['%s of %s, expected floating point' % (n, tensors[n].dtype) for n in expected
              if n in tensors and tensors[n].dtype not in ('f2', 'f4', 'f8', 'bf16')]
    problems = []
    if missing:
        problems.append('%d missing (%s)' % (len(missing), ', '.join(missing)))
    if extra:
        problems.append('%d extra (%s)' % (len(extra), ', '.join(extra)))
    if wrong:
        problems.append('%d with the wrong shape or type (%s)' % (len(wrong), '; '.join(wrong)))
    if problems:
        raise UserError('%s does not hold torchvision\'s ResNet-50 (%s) at the widths its tensors '
                        'give: tensors %s. Pass a state dict of torchvision\'s resnet50 layout '
                        '(torch.save(model.state_dict(), f)); nothing was written'
                        % (path, MODEL, '; '.join(problems)))


def _shape(shape):
    return '[%s]' % ', '.join(str(n) for n in shape)


def to_sres50(arrays):
    """torchvision name -> array into sres50 name -> float32 array (kernels HWIO, fc transposed)."""
    names = resnet50_model.torchvision_names()
    weights = {}
    for theirs, value in arrays.items():
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        weights[names[theirs]] = np.ascontiguousarray(value)
    return weights
