"""`export --int8` (and `--onnx`, where tf2onnx and onnxruntime are installed): one export of a tiny
vc through the driver in a run directory. In a fresh process the int8 file has int8 input and
outputs and its dequantized logits track the SavedModel's; the ONNX file's logits are within 1e-4
of them; the top-1s the export recorded (export.json, results.json) are those of the files;
`summary` shows them; bad flags are one error line."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from helpers import error_lines, random_weights, run_driver_cases, run_script
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.models.registry import get_model
from tf_benchmarks.data import input_pipeline, records

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
VC_DEPS = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]
CHECKED = 150  # of the 200 test images, the ones the export checks (--check_images)
ONNX = all(importlib.util.find_spec(p) for p in ('tf2onnx', 'onnx', 'onnxruntime'))
BAD_CASES = [(['export', 'vc.hdf5', '--out', 'bad1', '--int8', '--int8_images', '0'],
              '--int8_images must be between 1 and'),
             (['export', 'vc.hdf5', '--out', 'bad2', '--int8_images', '5'],
              '--int8_images is a flag of export --int8'),
             (['summary', 'vc.hdf5', '--int8'], '--int8 is a flag of export, not of summary'),
             (['export', 'vc.hdf5', '--out', 'bad3', '--int8', '--check_images', '0'],
              '--check_images must be between 1 and')]


@pytest.fixture(scope='module')
def exported(tmp_path_factory, synthetic_dir):
    """vc.hdf5 exported with --int8 (and --onnx) in a directory with a run record."""
    work = tmp_path_factory.mktemp('checked')
    vc = get_model('vc')
    hdf5_io.save_hdf5(str(work / 'vc.hdf5'), random_weights(vc.trace(VC_DEPS), 7), VC_DEPS)
    (work / 'run.json').write_text(json.dumps({'stages': {}}))  # a run directory, no stage done
    result = run_script(AOFP, ['export', 'vc.hdf5', '--out', 'vc_out', '--int8',
                               '--int8_images', '64', '--check_images', str(CHECKED),
                               '--data_dir', synthetic_dir] +
                        (['--onnx'] if ONNX else []), work)
    # summary and the refused commands, in one driver process
    cases = [['summary', 'vc.hdf5']] + [c for c, _ in BAD_CASES] + \
        ([] if ONNX else [['export', 'vc.hdf5', '--out', 'bad4', '--onnx', '--data_dir',
                           synthetic_dir]])
    outcomes = run_driver_cases(AOFP, [(work, c) for c in cases])
    images, labels = input_pipeline.load_split(records.split_path(synthetic_dir, 'test'))
    np.savez(work / 'images.npz', images=images)
    subprocess.run([sys.executable, os.path.join(REPO, 'tests', 'load_exported.py'),
                    str(work / 'images.npz'), str(work / 'logits.npz'), str(work / 'vc_out')],
                   check=True, capture_output=True)
    return work, result, dict(np.load(work / 'logits.npz')), labels, outcomes


def test_int8_file_is_integer_and_tracks_the_float_model(exported):
    work, result, logits, labels, outcomes = exported
    assert 'model_int8.tflite' in result.stdout and 'int8 TFLite' in result.stdout
    assert list(logits['int8_0_types']) == ['int8', 'int8']
    float_logits, int8_logits = logits['saved0_logits'], logits['int8_0_logits']
    assert np.isfinite(int8_logits).all() and int8_logits.shape == float_logits.shape == (200, 11)
    # A random vc's logits are mostly a per-class offset (one class wins on every image), so the
    # int8 logits are held to both: within 10% of the largest logit (measured 4%; a wrong scale
    # or zero point is far off), and correlated with the float ones in how they vary between
    # images, each class's mean over the images removed (measured 0.987)
    assert np.abs(int8_logits - float_logits).max() <= 0.1 * np.abs(float_logits).max()
    centered = [l - l.mean(0) for l in (float_logits, int8_logits)]
    assert np.corrcoef(centered[0].ravel(), centered[1].ravel())[0, 1] > 0.95

    info = json.loads((work / 'vc_out' / 'export.json').read_text())
    check = info['check']
    assert check['images'] == CHECKED and check['split'] == 'test'
    assert info['int8']['representative_images'] == 64
    assert info['int8']['input'] == dict(dtype='int8', scale=1.0, zero_point=-128)
    for name, key in (('saved_model', 'saved0_logits'), ('tflite', 'tflite0_logits'),
                      ('tflite_int8', 'int8_0_logits')):
        assert check['top1'][name] == np.mean(logits[key][:CHECKED].argmax(1) ==
                                              labels[:CHECKED]), name
    float_logits, int8_logits = float_logits[:CHECKED], int8_logits[:CHECKED]
    scale = np.abs(float_logits).max()
    assert check['max_rel_logit_diff']['tflite_int8'] == pytest.approx(
        np.abs(int8_logits - float_logits).max() / scale, rel=1e-3)
    # in a run directory the figures are in results.json too, and summary shows them
    document = json.loads((work / 'results.json').read_text())
    assert document['runs'] == {} and [e['out'] for e in document['exports']] == ['vc_out']
    assert document['exports'][0]['top1'] == check['top1']
    assert outcomes[0]['code'] == 0, outcomes[0]
    summary = outcomes[0]['stdout']
    assert 'int8 TFLite %.2f%%' % (100 * check['top1']['tflite_int8']) in summary, summary


@pytest.mark.skipif(not ONNX, reason='tf2onnx, onnx and onnxruntime are not installed '
                                     '(pip install -e \'.[onnx]\')')
def test_onnx_file_reproduces_the_saved_model(exported):
    work, _, logits, labels, _ = exported
    reference, onnx_logits = logits['saved0_logits'], logits['onnx0_logits']
    difference = np.abs(onnx_logits - reference).max() / np.abs(reference).max()
    assert difference <= 1e-4
    check = json.loads((work / 'vc_out' / 'export.json').read_text())['check']
    assert check['max_rel_logit_diff']['onnx'] <= 1e-4 and check['onnx_tolerance'] == 1e-4
    assert check['top1']['onnx'] == np.mean(onnx_logits[:CHECKED].argmax(1) == labels[:CHECKED])


def test_bad_export_flags_are_one_error_line(exported):
    work, outcomes = exported[0], exported[4][1:]
    expected = [m for _, m in BAD_CASES] + ([] if ONNX else ["pip install -e '.[onnx]'"])
    assert len(outcomes) == len(expected)
    for outcome, message in zip(outcomes, expected):
        errors = error_lines(outcome['stderr'])
        assert outcome['code'] == 2 and len(errors) == 1 and message in errors[0], outcome
    assert not [p for p in work.iterdir() if p.name.startswith(('bad', '.bad'))]


def test_folded_graph_has_only_int8_quantizable_ops():
    """TFLite runs AddN in float inside an int8 model and its XNNPACK delegate cannot prepare an
    int8 pad of -inf: the export graph adds pairwise and pads a max-pool after a ReLU with zeros,
    and computes the same logits (sres50: stem max-pool, projections, adds)."""
    import tensorflow.compat.v1 as tf
    from tf_benchmarks.deploy.export import build_inference_graph
    from tf_benchmarks.engine.evaluation import predict_logits
    from tf_benchmarks.network.input_spec import InputSpec
    model = get_model('sres50')
    deps = [max(1, d // 16) for d in model.default_deps]
    weights = random_weights(model.trace(deps), 3)
    images = np.random.default_rng(4).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    reference = predict_logits(model, deps, weights, images / np.float32(127.5) - 1)
    graph, inputs, logits, _, builder = build_inference_graph(model, deps, weights,
                                                              spec=InputSpec(32))
    types = [op.type for op in graph.get_operations()]
    assert 'AddN' not in types and 'PadV2' not in types and types.count('AddV2') >= 16
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        builder.load(sess)
        folded = sess.run(logits, {inputs: images})
    assert np.abs(folded - reference).max() <= 1e-4 * np.abs(reference).max()
