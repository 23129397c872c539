"""The modes both drivers share for using their results: `export FILE.hdf5 --out DIR [--tflite]`,
`summary FILE.hdf5 [--base BASE.hdf5] [--json]` and `report`; their flags and one dispatch
function."""

import sys

from absl import flags

from tf_benchmarks.core.errors import UserError

FLAGS = flags.FLAGS
MODES = ('export', 'summary', 'report')
USAGE = ('export FILE.hdf5 --out DIR [--tflite] | summary FILE.hdf5 [--base BASE.hdf5] [--json] | '
         'report')


def define_flags():
    flags.DEFINE_string('out', None, 'export: the directory to write (SavedModel, export.json and, '
                        'with --tflite, model.tflite); it must not exist or be empty.')
    flags.DEFINE_bool('tflite', False, 'export: also write model.tflite, the same model for '
                      'TensorFlow Lite.')
    flags.DEFINE_string('base', None, 'summary: the weights file to count the removed share '
                        'against (default: the model\'s original widths).')
    flags.DEFINE_bool('json', False, 'summary: print JSON instead of a table.')


def run_mode(argv, script):
    """Run `export`, `summary` or `report` as argv asks (argv[1] is one of MODES); returns None, the
    drivers' exit status 0. The model is --model where given, else the one the file's variables
    fit."""
    mode, args = argv[1], argv[2:]
    usage = 'usage: %s %s' % (script, USAGE)
    model_name = FLAGS.model if FLAGS['model'].present else None
    for names, owner in ((('out', 'tflite'), 'export'), (('base', 'json'), 'summary')):
        for name in names:
            if mode != owner and FLAGS[name].present:
                raise UserError('--%s is a flag of %s, not of %s. %s' % (name, owner, mode, usage))
    if mode == 'report':
        if args:
            raise UserError('report takes no file; run it in the working directory that holds '
                            'results.json. ' + usage)
        from tf_benchmarks.deploy.report_plots import make_report
        make_report('.')
        return
    if len(args) != 1:
        raise UserError('%s takes one weights file. %s' % (mode, usage))
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
