"""The modes both drivers share for using their results: `export FILE.hdf5 --out DIR [--tflite]
[--int8] [--onnx]`, `export-keras FILE.hdf5 --out NET.keras`, `summary FILE.hdf5 [--base BASE.hdf5]
[--json] [--latency]`, `verify A.hdf5 B.hdf5`, `latency-table FILE.hdf5 --out TABLE.json` and
`report`, and for bringing in a start: `import FILE.pth --out FILE.hdf5` (torchvision's ResNet-50)
and `import-keras MODEL.keras --out FILE.hdf5`; their flags (with --verify_images and
--verify_tolerance, which the methods' cuts use too, and the --latency flags of every stage) and one
dispatch function."""

import sys

from absl import flags

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.deploy import latency
from tf_benchmarks.engine import cut_check

FLAGS = flags.FLAGS
MODES = ('export', 'export-keras', 'summary', 'verify', 'report', 'import', 'import-keras',
         'latency-table')
USAGE = ('export FILE.hdf5 --out DIR [--tflite] [--int8 [--int8_images N]] [--onnx] | '
         'export-keras FILE.hdf5 --out NET.keras | summary FILE.hdf5 [--base BASE.hdf5] [--json] '
         '[--latency] | verify A.hdf5 B.hdf5 [--verify_images N] | report | '
         'import FILE.pth --out FILE.hdf5 [--model sres50] | '
         'import-keras MODEL.keras --out FILE.hdf5 | '
         'latency-table FILE.hdf5 --out TABLE.json [--latency_batch B] [--latency_calls N]')
# The modes each of these flags belongs to.
FLAG_MODES = {'out': ('export', 'export-keras', 'import', 'import-keras', 'latency-table'),
              'tflite': ('export',), 'int8': ('export',), 'int8_images': ('export',),
              'onnx': ('export',), 'check_images': ('export',),
              'base': ('summary',), 'json': ('summary',)}
# What each mode's one argument is.
ARGUMENTS = {'import': '.pth', 'import-keras': 'Keras model (.keras or .h5)'}


def define_flags():
    flags.DEFINE_string('out', None, 'export: the directory to write (SavedModel, export.json and, '
                        'with --tflite, model.tflite); it must not exist or be empty. export-keras: '
                        'the .keras file to write. import, import-keras: the weights file to '
                        'write.')
    flags.DEFINE_bool('tflite', False, 'export: also write model.tflite, the same model for '
                      'TensorFlow Lite.')
    flags.DEFINE_bool('int8', False, 'export: also write model_int8.tflite (and model.tflite), '
                      'full-integer post-training quantization (int8 weights, activations, input '
                      'and outputs) calibrated on the first --int8_images training images of '
                      '--data_dir, and record the top-1 of the SavedModel, the TFLite and the int8 '
                      'TFLite file on the test split.')
    flags.DEFINE_integer('int8_images', 200, 'export --int8: how many training images (the first '
                         'of the split, as evaluation input) calibrate the quantization.')
    flags.DEFINE_integer('check_images', None, 'export --int8/--onnx: check the runtimes on the '
                         'first N test images only (default: the whole test split, held in memory: '
                         'use it for ImageNet, whose 50,000 validation images take 7.5 GB).')
    flags.DEFINE_bool('onnx', False, 'export: also write model.onnx (tf2onnx; pip install -e '
                      '\'.[onnx]\'), checked with ONNX Runtime on the test split of --data_dir: '
                      'its logits must be within 1e-4 (relative) of the SavedModel\'s.')
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
    flags.DEFINE_bool('latency', latency.default_on(), 'Measure the latency of the model of every '
                      'finished stage of prune, csgd1 and magnitude1 on this machine (SavedModel '
                      'and TFLite, batch 1 and --latency_batch) into results.json and the log; '
                      '--nolatency to skip it (default on, off where $%s is 0). summary measures '
                      'only when --latency is given.' % latency.LATENCY_ENV)
    flags.DEFINE_integer('latency_calls', latency.DEFAULT_CALLS, 'Timed batch-1 calls per model '
                         'and runtime after a warm-up (a fifth as many at --latency_batch); '
                         'latency-table: timed calls per entry (at least 50 unless '
                         '--latency_few_calls).')
    flags.DEFINE_integer('latency_batch', latency.DEFAULT_BATCH, 'The throughput batch of the '
                         'latency measurements; the batch of latency-table and of AOFP\'s '
                         '--target_latency_ms.')
    flags.DEFINE_bool('latency_few_calls', False, 'latency-table: allow fewer than 50 calls per '
                      'entry; prune --target_latency_ms: accept such a table (for tests; such a '
                      'table is noisy).')


def cut_check_from_flags():
    """The verification of cuts as --verify_images and --verify_tolerance ask."""
    return cut_check.check_settings(FLAGS.verify_images, FLAGS.verify_tolerance)


def latency_settings_from_flags():
    return latency.check_settings(FLAGS.latency_calls, FLAGS.latency_batch)


def stage_latency(base_path, log=lambda line: None):
    """The LatencyMeter of a run's stages against its base file, or None with --nolatency (the
    methods log its line themselves)."""
    if not FLAGS.latency:
        return None
    return latency.LatencyMeter(latency_settings_from_flags(), base_path, log)


def table_calls_from_flags():
    """--latency_calls for a latency table: at least MIN_CALLS unless --latency_few_calls."""
    from tf_benchmarks.deploy.latency_table import MIN_CALLS
    settings = latency_settings_from_flags()
    if settings.calls < MIN_CALLS and not FLAGS.latency_few_calls:
        raise UserError('a latency table takes the median of at least %d calls per entry; got '
                        '--latency_calls %d (pass --latency_few_calls to allow fewer)'
                        % (MIN_CALLS, settings.calls))
    return settings


def run_mode(argv, script, masked_version=None):
    """Run `export`, `export-keras`, `summary`, `verify`, `report`, `import` or `import-keras` as
    argv asks (argv[1] is one of MODES); returns None, the drivers' exit status 0. The model is
    --model where given, else the one the file's variables fit (import: sres50; import-keras: the
    Keras file's). `masked_version(model, weight_file)` runs an AOFP
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
                            % (name, _listed(owners), mode, usage))
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
                        % (mode, ARGUMENTS.get(mode, 'weights'), usage))
    if mode == 'import':
        run_import(args[0], model_name, usage)
        return
    if mode == 'import-keras':
        run_import_keras(args[0], model_name, usage)
        return
    if mode == 'export-keras':
        if not FLAGS.out:
            raise UserError('export-keras needs --out NET.keras, the file to write. ' + usage)
        from tf_benchmarks.deploy.keras_export import export_keras_file
        export_keras_file(args[0], FLAGS.out, model_name)
        return
    if mode == 'latency-table':
        run_latency_table(args[0], model_name, usage)
        return
    if mode == 'export':
        if not FLAGS.out:
            raise UserError('export needs --out DIR, the directory to write. ' + usage)
        from tf_benchmarks.deploy.export import export_file
        if FLAGS['int8_images'].present and not FLAGS.int8:
            raise UserError('--int8_images is a flag of export --int8; add --int8. ' + usage)
        export_file(args[0], FLAGS.out, FLAGS.tflite, model_name, int8=FLAGS.int8,
                    int8_images=FLAGS.int8_images, onnx=FLAGS.onnx, data_dir=FLAGS.data_dir,
                    check_images=FLAGS.check_images)
        return
    from tf_benchmarks.deploy import layer_summary
    summary = layer_summary.summarize_file(args[0], FLAGS.base, model_name)
    if FLAGS['latency'].present and FLAGS.latency:
        meter = latency.LatencyMeter(latency_settings_from_flags(), FLAGS.base,
                                     log=lambda line: None)
        try:
            summary['latency'] = meter.measure(args[0])
        finally:
            meter.close()
    text = layer_summary.format_json(summary) if FLAGS.json else \
        layer_summary.format_table(summary)
    if 'latency' in summary and not FLAGS.json:
        text += latency.describe(summary['latency']) + '\n'
    sys.stdout.write(text)
    sys.stdout.flush()


def run_verify(args, model_name, masked_version, usage):
    """`verify A.hdf5 B.hdf5`: B against A on the fixed batch of --data_dir; prints the figures."""
    if len(args) != 2:
        raise UserError('verify takes two weights files, the original first. ' + usage)
    check = cut_check_from_flags()
    from tf_benchmarks.deploy.verify_files import verify_files
    print(verify_files(args[0], args[1], FLAGS.data_dir, check, model_name, masked_version))
    sys.stdout.flush()


def run_latency_table(path, model_name, usage):
    """`latency-table FILE.hdf5 --out TABLE.json`: the per-layer table of FILE's model."""
    import os
    if not FLAGS.out:
        raise UserError('latency-table needs --out TABLE.json, the file to write. ' + usage)
    if os.path.exists(FLAGS.out):
        raise UserError('%s already exists; latency-table writes a new file, so pass another '
                        '--out or remove it' % FLAGS.out)
    settings = table_calls_from_flags()
    from tf_benchmarks.deploy.latency_table import write_table_from_file
    write_table_from_file(path, FLAGS.out, settings.batch, settings.calls, model_name)
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


def run_import_keras(path, model_name, usage):
    """`import-keras MODEL.keras --out FILE.hdf5`: a Keras model as a weight file."""
    if not FLAGS.out:
        raise UserError('import-keras needs --out FILE.hdf5, the weights file to write. ' + usage)
    if FLAGS.out == path:
        raise UserError('import-keras: --out %s is the file being imported; name another file'
                        % path)
    if model_name:
        raise UserError('import-keras takes its network from the Keras file; leave --model out')
    from tf_benchmarks.deploy.keras_import import import_keras_file
    import_keras_file(path, FLAGS.out, image_size=_flag('image_size'),
                      normalization=_flag('normalization'))


def _flag(name):
    """A common flag's value where this driver defines it (the drivers do), else None."""
    return getattr(FLAGS, name) if name in FLAGS else None


def _listed(names):
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else '%s and %s' % (', '.join(names[:-1]), names[-1])
