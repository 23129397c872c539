"""`verify A.hdf5 B.hdf5`: the figures a run logs for each of its cuts (engine/cut_check.py), for
any two weights files of one model: B's logits against A's on the fixed batch of --data_dir. An AOFP
tuned file (with masks) is run as the masked model it stands for, where the driver can build one."""

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.cut_check import CutVerifier, Version
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network.input_spec import default_spec
from tf_benchmarks.pruning.file_model import check_masks, identify_model


def _version(model, weight_file, path, masked_version):
    if not weight_file.masks:
        return Version(model.file_deps(weight_file), weight_file.weights)
    check_masks(model, model.file_deps(weight_file), weight_file.masks, path)
    if masked_version is None:
        raise UserError('%s is an AOFP tuned file (it has masks); verify it with '
                        'aofp_standalone.py, which runs it as the masked model' % path)
    return masked_version(model, weight_file)


def _check_same_model(paths, models, files):
    (a, b), (ma, mb), (fa, fb) = paths, models, files
    if ma.name != mb.name:
        raise UserError('verify compares two versions of one model: %s holds a %s, %s a %s'
                        % (a, ma.name, b, mb.name))
    classes = ma.file_num_classes(fa), mb.file_num_classes(fb)
    if classes[0] != classes[1]:
        raise UserError('verify compares two versions of one model: %s has %d classes, %s %d'
                        % (a, classes[0], b, classes[1]))
    specs = [f.input_spec or default_spec(ma) for f in files]
    if specs[0] != specs[1]:
        raise UserError('verify compares two versions of one model: %s takes %s input, %s %s'
                        % (a, specs[0], b, specs[1]))
    return classes[0]


def verify_files(path_a, path_b, data_dir, check, model_name=None, masked_version=None):
    """The verify line of B against A (its reference) on the fixed batch; UserError if the two
    files are not versions of one model (architecture, classes, input)."""
    files = [hdf5_io.read_hdf5(p) for p in (path_a, path_b)]
    models = [identify_model(f, p, model_name) for f, p in zip(files, (path_a, path_b))]
    num_logits = _check_same_model((path_a, path_b), models, files)
    model = models[0]
    versions = [_version(model, f, p, masked_version) for f, p in zip(files, (path_a, path_b))]
    verifier = CutVerifier(check, model, data_dir, files[0].input_spec, num_logits)
    comparison = verifier.compare(versions[0], versions[1], '%s and %s' % (path_a, path_b))
    names = ['%s%s' % (p, ' (masked)' if f.masks else '') for p, f in zip((path_a, path_b), files)]
    return verifier.line(comparison, names[1], names[0])
