"""`export`: a weights file as an inference-only SavedModel (uint8 NHWC 32x32x3 images in, the
evaluation's scaling inside, BN folded into the convolutions, `logits` and `probabilities` out) and,
optionally, a TFLite file of the same model, a full-integer (int8) TFLite file quantized with
training images, and an ONNX file, with the file's class names in labels.txt beside them and in
export.json; the int8 and ONNX files are checked on the test split in a fresh process (top-1 of
every runtime, logit differences). All written to a temporary directory, then renamed."""

import json
import os
import shutil
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError, cannot_write_message, write_failure_reason
from tf_benchmarks.deploy import runtime_check
from tf_benchmarks.deploy.bn_folding import fold_batch_norms
from tf_benchmarks.deploy.fresh_process import run_script
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.files.atomic import file_digest, temporary_name
from tf_benchmarks.network import flops
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.network.input_spec import default_spec, normalize
from tf_benchmarks.pruning.file_model import read_model_file
from tf_benchmarks.runs import results

SIGNATURE = 'serving_default'
TFLITE_FILE = runtime_check.FILES[runtime_check.TFLITE]
INT8_FILE = runtime_check.FILES[runtime_check.TFLITE_INT8]
ONNX_FILE = runtime_check.FILES[runtime_check.ONNX]
INFO_FILE = 'export.json'
ONNX_TOLERANCE = 1e-4   # the largest relative logit difference of model.onnx to the SavedModel
DEFAULT_INT8_IMAGES = 200
MAX_INT8_IMAGES = 100000
LABELS_FILE = 'labels.txt'  # the class names, one a line in logit order (TFLite's label file form)


class FoldedBuilder(ConvNetBuilder):
    """Emits a model's builder calls as an inference graph from FoldedWeights: each conv with its
    folded bias, BNs that follow a conv as nothing, other BNs as scale and shift, FC layers as they
    are. Weights become non-trainable variables named like the model's (`.../conv2d/kernel`,
    `.../conv2d/bias`, `<bn scope>/scale`), assigned by `load(session)`."""

    def __init__(self, images, folded):
        super().__init__(images, phase_train=False)
        self.folded = folded
        self.values = []  # (variable, value)

    def _weight(self, full_name, value):
        scope = self.current_scope()
        name = full_name[len(scope) + 1:] if scope else full_name
        var = tf.get_variable(name, value.shape, tf.float32, initializer=tf.zeros_initializer(),
                              trainable=False, use_resource=True)  # loads as a tf.Variable
        self.values.append((var, value))
        return var

    def _emit_variable(self, name, full_name, shape, initializer, trainable):
        return None  # the folded weights are created where they are used

    def _emit_conv(self, x, kernel, strides, mode):
        conv = self.trace.convs[-1]
        kernel, bias = self.folded.convs[conv.index]
        y = self.conv2d(x, self._weight(conv.kernel, kernel), strides, mode)
        if bias is None:
            return y
        return tf.nn.bias_add(y, self._weight(conv.kernel.rsplit('/', 1)[0] + '/bias', bias))

    def _emit_bias(self, x, bias):
        return x  # a conv's bias is in its folded bias; a depthwise conv adds its own

    def _emit_depthwise(self, x, kernel, strides, mode):
        layer = self.trace.depthwise[-1]
        kernel, bias = self.folded.depthwise[layer.index]
        y = super()._emit_depthwise(x, self._weight(layer.kernel, kernel), strides, mode)
        if bias is None:
            return y
        return tf.nn.bias_add(y, self._weight(layer.kernel.rsplit('/', 1)[0] + '/bias', bias))

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        scope = self.trace.bns[-1].scope
        if scope in self.folded.folded_bns:
            return x
        scale, shift = self.folded.bns[scope]
        return x * self._weight(scope + '/scale', scale) + self._weight(scope + '/shift', shift)

    def _emit_pool(self, kind, x, ksize, strides, mode):
        if kind == 'max' and mode == 'SAME_RESNET' and x.op.type == 'Relu':
            # after a ReLU, zeros pad a max-pool exactly as -inf does (every window holds a value
            # >= 0), and TFLite's XNNPACK delegate cannot prepare an int8 PADV2 of -inf
            k_h, k_w = ksize
            x = tf.pad(x, [[0, 0], [(k_h - 1) // 2, k_h // 2], [(k_w - 1) // 2, k_w // 2], [0, 0]])
            return tf.nn.max_pool(x, [1, k_h, k_w, 1], [1, strides[0], strides[1], 1], 'VALID')
        return super()._emit_pool(kind, x, ksize, strides, mode)

    def _emit_add(self, xs):
        # pairwise Add, not AddN: TFLite quantizes ADD to int8 but runs ADD_N in float between a
        # dequantize and a quantize, which its XNNPACK delegate then fails to prepare
        total = xs[0]
        for x in xs[1:]:
            total = tf.add(total, x)
        return total

    def _emit_affine(self, x, kernel, bias):
        layer = self.trace.affines[-1]
        kernel, bias = self.folded.affines[layer.index]
        return tf.nn.xw_plus_b(x, self._weight(layer.kernel, kernel),
                               self._weight(layer.bias, bias))

    def load(self, session):
        placeholders = [tf.placeholder(tf.float32, v.shape) for v, _ in self.values]
        session.run([tf.assign(v, p) for (v, _), p in zip(self.values, placeholders)],
                    {p: value for p, (_, value) in zip(placeholders, self.values)})


def build_inference_graph(model, deps, weights, num_classes=None, spec=None, dtype=tf.uint8):
    """(graph, images placeholder, logits, probabilities, builder) of the folded model, taking
    images of the spec's size (default: the model's input), pixels 0..255 of `dtype` (uint8; float32
    for the int8 quantization), normalized as the spec says."""
    model.check_deps(deps)
    spec = spec or default_spec(model)
    folded = fold_batch_norms(model.trace(deps, num_classes), weights)
    graph = tf.Graph()
    with graph.as_default():
        size = spec.image_size
        images = tf.placeholder(dtype, [None, size, size, 3], name='images')
        builder = FoldedBuilder(normalize(images, spec.normalization), folded)
        logits = tf.identity(model.build(builder, deps, num_classes).tensor, name='logits')
        probabilities = tf.nn.softmax(logits, name='probabilities')
    return graph, images, logits, probabilities, builder


def _save_saved_model(directory, model, deps, weights, num_classes=None, spec=None,
                      dtype=tf.uint8):
    graph, images, logits, probabilities, builder = build_inference_graph(
        model, deps, weights, num_classes, spec, dtype)
    with graph.as_default(), tf.Session(graph=graph,
                                        config=tf_session.session_config()) as session:
        session.run(tf.global_variables_initializer())
        builder.load(session)
        signature = tf.saved_model.signature_def_utils.predict_signature_def(
            inputs={'images': images},
            outputs={'logits': logits, 'probabilities': probabilities})
        saved = tf.saved_model.builder.SavedModelBuilder(directory)
        saved.add_meta_graph_and_variables(session, [tf.saved_model.tag_constants.SERVING],
                                           signature_def_map={SIGNATURE: signature},
                                           strip_default_attrs=True)
        saved.save()


def _convert_tflite(saved_model_dir, out_file, int8=None):
    """tflite_convert.py in a fresh process: in the drivers' graph mode the converter would drop
    the signature. `int8`: (the float-pixel SavedModel, its out file, an .npy of float32 pixels)
    for the full-integer conversion, in the same process."""
    result = run_script('tflite_convert.py', [saved_model_dir, out_file] + list(int8 or ()),
                        'the TFLite conversion of %s failed' % saved_model_dir)
    if result.stderr.strip():
        sys.stderr.write(result.stderr)


def _check_runtimes(directory, images, labels, work):
    """runtime_check.py on the export in a fresh process: its figures (a dict)."""
    data, out = os.path.join(work, 'images.npz'), os.path.join(work, 'check.json')
    np.savez(data, images=images, labels=labels)
    run_script('runtime_check.py', [directory, data, out],
               'checking the exported models of %s failed' % directory)
    with open(out) as f:
        return json.load(f)


def check_int8_images(count):
    if not 1 <= count <= MAX_INT8_IMAGES:
        raise UserError('--int8_images must be between 1 and %d, got %d' % (MAX_INT8_IMAGES, count))
    return count


def _preprocessing(spec):
    if spec.normalization_name == 'inception':
        return 'float32(images) / 127.5 - 1 (as the evaluation)'
    return ('(float32(images) - mean) / std per channel, mean %s, std %s (as the evaluation; the '
            'caller resizes and crops to %dx%d)' % (list(spec.mean), list(spec.std),
                                                   spec.image_size, spec.image_size))


def export_file(path, out_dir, tflite=False, model_name=None, log=print, int8=False,
                int8_images=DEFAULT_INT8_IMAGES, onnx=False, data_dir=None, check_images=None):
    """Export the weights file `path` to `out_dir` (which must not exist or be empty); returns
    the info written to out_dir/export.json. `int8` (which implies `tflite`) adds model_int8.tflite,
    quantized with the first `int8_images` training images of `data_dir`; `onnx` adds model.onnx.
    Either checks every runtime on the test split of `data_dir` (its first `check_images` images
    where given: the check holds them in memory, 7.5 GB for ImageNet's 50,000) (the ONNX logits within
    ONNX_TOLERANCE of the SavedModel's, else nothing is written) and records the figures in
    export.json and, in a run directory, in results.json."""
    out_dir = out_dir.rstrip('/') or out_dir
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UserError('%s already exists; export writes a new directory, so pass another --out '
                        'or remove it' % out_dir)
    if onnx:
        from tf_benchmarks.deploy import onnx_convert
        onnx_convert.check_installed()
    if int8:
        check_int8_images(int8_images)
        tflite = True
    if check_images is not None and not 1 <= check_images <= MAX_INT8_IMAGES:
        raise UserError('--check_images must be between 1 and %d, got %d'
                        % (MAX_INT8_IMAGES, check_images))
    mf = read_model_file(path, model_name)
    size = mf.input_spec.image_size
    checked = int8 or onnx
    if checked:  # every input is read before anything is written
        from tf_benchmarks.deploy.export_images import split_images
        test_images, test_labels = split_images(data_dir, 'test', mf.input_spec, mf.num_classes,
                                               check_images)
        results.read_exports('.')  # a damaged exports.json is said before the export
        if int8:
            representative, _ = split_images(data_dir, 'train', mf.input_spec, mf.num_classes,
                                             int8_images)
    tmp = temporary_name(os.path.abspath(out_dir), hidden=True)
    work = tmp + '.work'  # the int8 conversion's float-input SavedModel, the check's images
    for d in (tmp, work):
        shutil.rmtree(d, ignore_errors=True)
    try:
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            os.mkdir(tmp)
            os.rmdir(tmp)  # the SavedModel builder makes it again
            if checked:
                os.mkdir(work)
        except OSError as e:
            raise UserError(cannot_write_message(out_dir, e.strerror))
        try:
            _save_saved_model(tmp, mf.model, mf.deps, mf.weights, mf.num_classes, mf.input_spec)
            if int8:
                _save_saved_model(os.path.join(work, 'float_pixels'), mf.model, mf.deps,
                                  mf.weights, mf.num_classes, mf.input_spec, tf.float32)
        except tf.errors.OpError as e:  # TensorFlow's own file writes
            raise UserError(cannot_write_message(out_dir, write_failure_reason(e.message)))
        info = dict(
            format='export-v1', source=path, source_sha256=file_digest(path), model=mf.model.name,
            widths=list(mf.deps), masks_removed=mf.masked,
            flops=flops.count_flops(mf.model, mf.deps, image_size=size),
            params=flops.count_params(mf.model, mf.deps),
            signature=SIGNATURE, inputs={'images': 'uint8 [batch, %d, %d, 3], RGB, NHWC'
                                         % (size, size)},
            preprocessing=_preprocessing(mf.input_spec),
            outputs={'logits': 'float32 [batch, %d]' % mf.num_classes,
                     'probabilities': 'softmax of the logits'},
            batch_norm='folded into the preceding convolutions; others as scale and shift')
        if mf.class_names:
            info['class_names'] = list(mf.class_names)
            info['labels'] = LABELS_FILE
            with open(os.path.join(tmp, LABELS_FILE), 'w') as f:
                f.write(''.join(name + '\n' for name in mf.class_names))
        info.update(results.other_flops(mf.model, mf.deps, mf.model.default_deps, size))
        if int8:
            npy = os.path.join(work, 'representative.npy')
            np.save(npy, representative.astype(np.float32))
            _convert_tflite(tmp, os.path.join(tmp, TFLITE_FILE),
                            (os.path.join(work, 'float_pixels'), os.path.join(tmp, INT8_FILE), npy))
            info['tflite'], info['tflite_int8'] = TFLITE_FILE, INT8_FILE
        elif tflite:
            _convert_tflite(tmp, os.path.join(tmp, TFLITE_FILE))
            info['tflite'] = TFLITE_FILE
        if int8:
            info['int8'] = dict(
                representative_images=int(len(representative)),
                representative='the first %d images of the training split, as evaluation input'
                               % len(representative),
                inputs='int8 [batch, %d, %d, 3]: the pixels quantized with the input\'s scale and '
                       'zero point (q = round(pixel / scale) + zero_point)' % (size, size),
                outputs='int8 logits and probabilities; dequantize with their scale and zero '
                        'point: (q - zero_point) * scale')
        if onnx:
            onnx_convert.convert(tmp, os.path.join(tmp, ONNX_FILE))
            info['onnx'] = ONNX_FILE
        if checked:
            check = _check_runtimes(tmp, test_images, test_labels, work)
            info['check'] = dict(check, split=_split_name(data_dir), data_dir=data_dir,
                                 onnx_tolerance=ONNX_TOLERANCE if onnx else None)
            if int8:
                info['int8'].update(check['io'].get(runtime_check.TFLITE_INT8, {}))
            if onnx and not check['max_rel_logit_diff']['onnx'] <= ONNX_TOLERANCE:
                raise UserError(
                    'the ONNX model of %s differs from the SavedModel by %.3g of the largest logit '
                    'on %d %s images, more than %g; nothing was written (report it with the '
                    'versions of tensorflow, tf2onnx and onnxruntime)'
                    % (path, check['max_rel_logit_diff']['onnx'], check['images'],
                       info['check']['split'], ONNX_TOLERANCE))
        with open(os.path.join(tmp, INFO_FILE), 'w') as f:
            json.dump(info, f, indent=1)
            f.write('\n')
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        os.replace(tmp, out_dir)
    except OSError as e:
        raise UserError(cannot_write_message(out_dir, e.strerror))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    files = [TFLITE_FILE] * tflite + [INT8_FILE] * int8 + [ONNX_FILE] * onnx
    log('exported %s (%s, widths %s%s, %d FLOPs%s) to %s: SavedModel, signature %s (images uint8 '
        '[N,%d,%d,3] -> logits, probabilities)%s'
        % (path, mf.model.name, list(mf.deps), ', masked filters removed' if mf.masked else '',
           info['flops'], flops.other_convention(mf.model, mf.deps, size), out_dir, SIGNATURE,
           size, size,
           ', and %s' % ', '.join(files) if files else ''))
    if checked:
        log(check_line(info['check']))
        where = results.record_export('.', export_entry(out_dir, info))
        if where:
            log('recorded in %s' % os.path.relpath(where))
    return info


NAMES = {runtime_check.SAVED_MODEL: 'SavedModel', runtime_check.TFLITE: 'TFLite',
         runtime_check.TFLITE_INT8: 'int8 TFLite', runtime_check.ONNX: 'ONNX'}


def check_line(check):
    """`top-1 on 1017 test images: SavedModel 60.96%, TFLite 60.96%, int8 TFLite 60.77% (...)`."""
    parts = []
    for name, top1 in check['top1'].items():
        part = '%s %.2f%%' % (NAMES[name], 100 * top1)
        if name in check['max_rel_logit_diff']:
            part += ' (max relative logit difference %.3g, top-1 agreement %.1f%%)' % (
                check['max_rel_logit_diff'][name], 100 * check['top1_agreement'][name])
        parts.append(part)
    return 'top-1 on %d %s images: %s' % (check['images'], check['split'], ', '.join(parts))


def export_entry(out_dir, info):
    """The export's entry of exports.json / results.json."""
    check = info['check']
    entry = dict(out=os.path.normpath(out_dir), source=info['source'],
                 source_sha256=info['source_sha256'], model=info['model'], widths=info['widths'],
                 flops=info['flops'], params=info['params'], images=check['images'],
                 split=check['split'], top1=check['top1'],
                 max_rel_logit_diff=check['max_rel_logit_diff'],
                 top1_agreement=check['top1_agreement'])
    entry.update({k: v for k, v in info.items() if k.startswith('flops_')})
    if 'int8' in info:
        entry['int8_images'] = info['int8']['representative_images']
    return entry


def _split_name(data_dir):
    from tf_benchmarks.data import sources
    return 'test' if sources.kind_of(data_dir) == sources.CIFAR10 else 'validation'
