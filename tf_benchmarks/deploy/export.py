"""`export`: a weights file as an inference-only SavedModel (uint8 NHWC 32x32x3 images in, the
evaluation's scaling inside, BN folded into the convolutions, `logits` and `probabilities` out) and,
optionally, a TFLite file of the same model, with the file's class names in labels.txt beside them
and in export.json; written to a temporary directory, then renamed."""

import json
import os
import shutil
import subprocess
import sys

import tensorflow.compat.v1 as tf

from tf_benchmarks.core.errors import UserError, cannot_write_message, write_failure_reason
from tf_benchmarks.deploy.bn_folding import fold_batch_norms
from tf_benchmarks.engine import session as tf_session
from tf_benchmarks.files.atomic import file_digest, temporary_name
from tf_benchmarks.network import flops
from tf_benchmarks.network.convnet_builder import ConvNetBuilder
from tf_benchmarks.network.input_spec import default_spec, normalize
from tf_benchmarks.pruning.file_model import read_model_file

SIGNATURE = 'serving_default'
TFLITE_FILE = 'model.tflite'
INFO_FILE = 'export.json'
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

    def _emit_batch_norm(self, x, gamma, beta, mean, variance, decay, epsilon):
        scope = self.trace.bns[-1].scope
        if scope in self.folded.folded_bns:
            return x
        scale, shift = self.folded.bns[scope]
        return x * self._weight(scope + '/scale', scale) + self._weight(scope + '/shift', shift)

    def _emit_affine(self, x, kernel, bias):
        layer = self.trace.affines[-1]
        kernel, bias = self.folded.affines[layer.index]
        return tf.nn.xw_plus_b(x, self._weight(layer.kernel, kernel),
                               self._weight(layer.bias, bias))

    def load(self, session):
        placeholders = [tf.placeholder(tf.float32, v.shape) for v, _ in self.values]
        session.run([tf.assign(v, p) for (v, _), p in zip(self.values, placeholders)],
                    {p: value for p, (_, value) in zip(placeholders, self.values)})


def build_inference_graph(model, deps, weights, num_classes=None, spec=None):
    """(graph, images placeholder, logits, probabilities, builder) of the folded model, taking
    uint8 images of the spec's size (default: the model's input) normalized as the spec says."""
    model.check_deps(deps)
    spec = spec or default_spec(model)
    folded = fold_batch_norms(model.trace(deps, num_classes), weights)
    graph = tf.Graph()
    with graph.as_default():
        size = spec.image_size
        images = tf.placeholder(tf.uint8, [None, size, size, 3], name='images')
        builder = FoldedBuilder(normalize(images, spec.normalization), folded)
        logits = tf.identity(model.build(builder, deps, num_classes).tensor, name='logits')
        probabilities = tf.nn.softmax(logits, name='probabilities')
    return graph, images, logits, probabilities, builder


def _save_saved_model(directory, model, deps, weights, num_classes=None, spec=None):
    graph, images, logits, probabilities, builder = build_inference_graph(model, deps, weights,
                                                                          num_classes, spec)
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


def _convert_tflite(saved_model_dir, out_file):
    """tflite_convert.py in a fresh process: in the drivers' graph mode the converter would drop
    the signature."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tflite_convert.py')
    result = subprocess.run([sys.executable, script, saved_model_dir, out_file],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError('the TFLite conversion of %s failed:\n%s'
                        % (saved_model_dir, result.stderr.strip()[-3000:]))
    if result.stderr.strip():
        sys.stderr.write(result.stderr)


def _preprocessing(spec):
    if spec.normalization_name == 'inception':
        return 'float32(images) / 127.5 - 1 (as the evaluation)'
    return ('(float32(images) - mean) / std per channel, mean %s, std %s (as the evaluation; the '
            'caller resizes and crops to %dx%d)' % (list(spec.mean), list(spec.std),
                                                   spec.image_size, spec.image_size))


def export_file(path, out_dir, tflite=False, model_name=None, log=print):
    """Export the weights file `path` to `out_dir` (which must not exist or be empty); returns
    the info written to out_dir/export.json."""
    out_dir = out_dir.rstrip('/') or out_dir
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UserError('%s already exists; export writes a new directory, so pass another --out '
                        'or remove it' % out_dir)
    mf = read_model_file(path, model_name)
    size = mf.input_spec.image_size
    tmp = temporary_name(os.path.abspath(out_dir), hidden=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            os.mkdir(tmp)
            os.rmdir(tmp)  # the SavedModel builder makes it again
        except OSError as e:
            raise UserError(cannot_write_message(out_dir, e.strerror))
        try:
            _save_saved_model(tmp, mf.model, mf.deps, mf.weights, mf.num_classes, mf.input_spec)
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
        if tflite:
            _convert_tflite(tmp, os.path.join(tmp, TFLITE_FILE))
            info['tflite'] = TFLITE_FILE
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
    log('exported %s (%s, widths %s%s, %d FLOPs) to %s: SavedModel, signature %s (images uint8 '
        '[N,%d,%d,3] -> logits, probabilities)%s'
        % (path, mf.model.name, list(mf.deps), ', masked filters removed' if mf.masked else '',
           info['flops'], out_dir, SIGNATURE, size, size,
           ', and %s' % TFLITE_FILE if tflite else ''))
    return info

