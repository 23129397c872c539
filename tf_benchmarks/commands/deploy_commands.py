"""The modes both drivers share for using their results: `export FILE.hdf5 --out DIR [--tflite]`,
`summary FILE.hdf5 [--base BASE.hdf5] [--json]`, `verify A.hdf5 B.hdf5` and `report`, and for
bringing in a start: `import FILE.pth --out FILE.hdf5` (torchvision's ResNet-50); their flags (with
--verify_images and --verify_tolerance, which the methods' cuts use too) and one dispatch
function."""

import sys

from absl import flags

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine import cut_check

FLAGS = flags.FLAGS
MODES = ('export', 'summary', 'verify', 'report', 'import')
USAGE = ('export FILE.hdf5 --out DIR [--tflite] | summary FILE.hdf5 [--base BASE.hdf5] [--json] | '
         'verify A.hdf5 B.hdf5 [--verify_images N] | report | '
         'import FILE.pth --out FILE.hdf5 [--model sres50]')
# The modes each of these flags belongs to.
FLAG_MODES = {'out': ('export', 'import'), 'tflite': ('export',), 'base': ('summary',),
              'json': ('summary',)}


def define_flags():
    flags.DEFINE_string('out', None, 'export: the directory to write (SavedModel, export.json and, '
                        'with --tflite, model.tflite); it must not exist or be empty. import: the '
                        'weights file to write.')
    flags.DEFINE_bool('tflite', False, 'export: also write model.tflite, the same model for '
                      'TensorFlow Lite.')
    flags.DEFINE_string('base', None, 'summary: the weights file to count the removed share '
                        'against (default: the model\'s original widths).')
    flags.DEFINE_bool('json', False, 'summary: print JSON instead of a table.')
    flags.DEFINE_integer('verify_images', cut_check.DEFAULT_IMAGES, 'Every cut (AOFP\'s pruning, '
                         'C-SGD\'s trim, magnitude pruning) and `verify` compare the two models on '
                         'this many first images of the test split.')
    flags.DEFINE_float('verify_tolerance', cut_check.DEFAULT_TOLERANCE, 'The largest relative '
                       'logit difference an exact cut (AOFP\'s pruning, C-SGD\'s trim of '
                       'collapsed clusters) may show; above it the run ends before writing the '
                       'file.')


def cut_check_from_flags():
    """The verification of cuts as --verify_images and --verify_tolerance ask."""
    return cut_check.check_settings(FLAGS.verify_images, FLAGS.verify_tolerance)


def run_mode(argv, script, masked_version=None):
    """Run `export`, `summary`, `verify`, `report` or `import` as argv asks (argv[1] is one of
    MODES); returns None, the drivers' exit status 0. The model is --model where given, else the one
    the file's variables fit (import: sres50). `masked_version(model, weight_file)` runs an AOFP
    tuned file as its masked model in `verify` (the AOFP driver's; without it such files are
    refused)."""
    mode, args = argv[1], argv[2:]
    usage = 'usage: %s %s' % (script, USAGE)
    model_name = FLAGS.model if FLAGS['model'].present else None
    if model_name is not None and mode in ('export', 'summary', 'verify'):
        from tf_benchmarks.pruning.file_model import resolve_model
        model_name = resolve_model(model_name)  # a .py file is imported once
    for name, owners in FLAG_MODES.items():
        if mode not in owners and FLAGS[name].present:
            raise UserError('--%s is a flag of %s, not of %s. %s'
                            % (name, ' and '.join(owners), mode, usage))
    if mode == 'report':
        if args:
            raise UserError('report takes no file; run it in the working directory that holds '
                            'results.json. ' + usage)
        from tf_benchmarks.deploy.report_plots import make_report
        make_report('.')
        return
    if mode == 'verify':
        run_verify(args, model_name, masked_version, usage)
        return
    if len(args) != 1:
        raise UserError('%s takes one %s file. %s'
                        % (mode, '.pth' if mode == 'import' else 'weights', usage))
    if mode == 'import':
        run_import(args[0], model_name, usage)
        return
    if mode == 'export':
        if not FLAGS.out:
            raise UserError('export needs --out DIR, the directory to write. ' + usage)
        from tf_benchmarks.deploy.export import export_file
        export_file(args[0], FLAGS.out, FLAGS.tflite, model_name)
        return
    from tf_benchmarks.deploy import layer_summary
    summary = layer_summary.summarize_file(args[0], FLAGS.base, model_name)
    sys.stdout.write(layer_summary.format_json(summary) if FLAGS.json
                     else layer_summary.format_table(summary))
    sys.stdout.flush()


def run_verify(args, model_name, masked_version, usage):
    """`verify A.hdf5 B.hdf5`: B against A on the fixed batch of --data_dir; prints the figures."""
    if len(args) != 2:
        raise UserError('verify takes two weights files, the original first. ' + usage)
    check = cut_check_from_flags()
    from tf_benchmarks.deploy.verify_files import verify_files
    print(verify_files(args[0], args[1], FLAGS.data_dir, check, model_name, masked_version))
    sys.stdout.flush()


def run_import(path, model_name, usage):
    """`import FILE.pth --out FILE.hdf5`: torchvision's ResNet-50 state dict as a weight file."""
    if not FLAGS.out:
        raise UserError('import needs --out FILE.hdf5, the weights file to write. ' + usage)
    if FLAGS.out == path:
        raise UserError('import: --out %s is the file being imported; name another file' % path)
    from tf_benchmarks.deploy.torch_import import import_torch_file
    import_torch_file(path, FLAGS.out, model_name, image_size=_flag('image_size'),
                      normalization=_flag('normalization'))


def _flag(name):
    """A common flag's value where this driver defines it (the drivers do), else None."""
    return getattr(FLAGS, name) if name in FLAGS else None
