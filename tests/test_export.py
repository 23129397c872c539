"""`export`, `summary` and the quiet start-up: BN folding is exact; a masked vc and a DenseNet
exported through the driver load in a fresh process (tf.saved_model.load, the TFLite interpreter)
and agree with `eval`, and so does a ResNet's folded graph; the summary adds up to flops.py; bad
input ends with one error line and writes nothing."""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from helpers import random_weights, run_driver_cases
from aofp.pipeline import evaluate_weights, masked_builder_factory
from tf_benchmarks.network import flops
from tf_benchmarks.files import hdf5_io
from tf_benchmarks.data import input_pipeline, records
from tf_benchmarks.deploy import layer_summary
from tf_benchmarks.deploy.bn_folding import fold_batch_norms, fold_conv_bn
from tf_benchmarks.engine.evaluation import predict_logits
from tf_benchmarks.deploy.export import build_inference_graph
from tf_benchmarks.models.registry import MODELS, get_model
import tensorflow.compat.v1 as tf
from tf_benchmarks.core.tf_startup import startup_noise

AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
VC_DEPS = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]
DC40_DEPS = [4] + [2] * 12 + [28] + [2] * 12 + [52] + [2] * 12
SRC56_DEPS = [4] * 19 + [6] * 19 + [8] * 19


def test_folded_conv_equals_conv_then_batch_norm():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4, 8, 8, 5)).astype(np.float32)
    kernel = rng.normal(0, 0.3, (3, 3, 5, 7)).astype(np.float32)
    gamma, beta, mean = (rng.normal(0, 1, 7).astype(np.float32) for _ in range(3))
    variance = rng.uniform(0.2, 2.0, 7).astype(np.float32)
    folded, bias = fold_conv_bn(kernel, gamma, beta, mean, variance, 1e-3)
    with tf.Graph().as_default(), tf.Session() as sess:
        conv = tf.nn.conv2d(x, kernel, [1, 1, 1, 1], 'SAME')
        reference, _, _ = tf.nn.fused_batch_norm(conv, gamma, beta, mean=mean, variance=variance,
                                                 epsilon=1e-3, is_training=False)
        fused = tf.nn.bias_add(tf.nn.conv2d(x, folded, [1, 1, 1, 1], 'SAME'), bias)
        reference, fused = sess.run([reference, fused])
    assert np.abs(fused - reference).max() <= 1e-5 * np.abs(reference).max()

    # every BN right after a conv is folded; DenseNet's pre-activation BNs stay as scale and shift
    dc40 = get_model('dc40')
    trace = dc40.trace(DC40_DEPS)
    result = fold_batch_norms(trace, random_weights(trace, 0))
    assert not result.folded_bns and len(result.bns) == len(trace.bns)
    assert all(bias is None for _, bias in result.convs.values())
    src56 = get_model('src56').trace(SRC56_DEPS)
    result = fold_batch_norms(src56, random_weights(src56, 0))
    assert len(result.folded_bns) == len(src56.bns) == len(src56.convs) and not result.bns


def test_folded_resnet_graph_computes_the_model():
    """The export graph of a ResNet (strided SAME_RESNET convs, projections, adds) from uint8
    images equals the training builder's inference logits."""
    model = get_model('src56')
    weights = random_weights(model.trace(SRC56_DEPS), 4)
    images = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    reference = predict_logits(model, SRC56_DEPS, weights, images / np.float32(127.5) - 1)
    graph, inputs, logits, _, builder = build_inference_graph(model, SRC56_DEPS, weights)
    with graph.as_default(), tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        builder.load(sess)
        assert not tf.trainable_variables()
        folded = sess.run(logits, {inputs: images})
    assert np.abs(folded - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize('name', sorted(MODELS))
def test_summary_adds_up_to_the_logged_flops(name):
    model = get_model(name)
    pruned = [max(1, d * 5 // 8) for d in model.default_deps]
    for deps in (model.default_deps, pruned):
        summary = layer_summary.summarize(model, deps)
        total = summary['total']
        assert sum(r['flops'] for r in summary['layers']) == total['flops'] == \
            flops.count_flops(model, deps)
        assert sum(r['params'] for r in summary['layers']) == total['params'] == \
            flops.count_params(model, deps)
        assert total['flops_removed'] == pytest.approx(flops.flops_pruned_ratio(model, deps),
                                                       abs=1e-12)
        convs = [r for r in summary['layers'] if r['layer'].startswith('conv')]
        assert [r['width_out'] for r in convs] == list(deps)
        table = layer_summary.format_table(summary)
        assert '{:,}'.format(total['flops']) in table.splitlines()[-1 - len(summary['notes'])]


def _tuned_vc(path):
    """A vc tuned file: random weights at VC_DEPS and masks that keep about 2/3 of every layer."""
    vc = get_model('vc')
    rng = np.random.default_rng(3)
    masks = {i: (rng.uniform(size=d) < 0.66).astype(np.float32) for i, d in enumerate(VC_DEPS)}
    for mask in masks.values():
        mask[0] = 1.0
    hdf5_io.save_hdf5(path, random_weights(vc.trace(VC_DEPS), 1), VC_DEPS, masks)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """Three weights files exported through the AOFP driver in one process, together with the
    bad-input cases (whose outcomes are kept)."""
    work = tmp_path_factory.mktemp('export')
    _tuned_vc(str(work / 'vc_tuned.hdf5'))
    dc40 = get_model('dc40')
    hdf5_io.save_hdf5(str(work / 'dc40.hdf5'), random_weights(dc40.trace(DC40_DEPS), 2), DC40_DEPS)
    hdf5_io.save_hdf5(str(work / 'alien.hdf5'), {'layer/w': np.zeros((3, 3))}, [4, 4])
    (work / 'not_a_dir').write_text('a file')
    (work / 'taken').mkdir()
    (work / 'taken' / 'x').write_text('kept')
    (work / 'empty').mkdir()
    cases = [
        ['export', 'vc_tuned.hdf5', '--out', 'vc_out', '--tflite'],
        ['export', 'dc40.hdf5', '--out', 'dc40_out', '--model', 'dc40'],
        ['summary', 'vc_tuned.hdf5', '--json'],
        ['export', 'missing.hdf5', '--out', 'bad1'],
        ['export', 'alien.hdf5', '--out', 'bad2'],
        ['export', 'vc_tuned.hdf5', '--out', 'not_a_dir/bad3'],
        ['export', 'vc_tuned.hdf5', '--out', 'taken'],
        ['export', 'dc40.hdf5', '--out', 'bad4', '--model', 'vc'],
        ['export', 'dc40.hdf5'],
        ['summary', 'dc40.hdf5', '--base', 'vc_tuned.hdf5'],
        ['summary', 'dc40.hdf5', '--out', 'x'],
        ['report'],
    ]
    outcomes = run_driver_cases(AOFP, [(work, c) for c in cases])
    return work, dict(zip([' '.join(c) for c in cases], outcomes))


def test_export_round_trip_in_a_fresh_process(work, synthetic_dir):
    work, outcomes = work
    for key in list(outcomes)[:2]:
        assert outcomes[key]['code'] == 0, outcomes[key]
    assert 'masked filters removed' in outcomes['export vc_tuned.hdf5 --out vc_out --tflite'][
        'stdout']
    images, labels = input_pipeline.load_split(records.split_path(synthetic_dir, 'test'))
    np.savez(work / 'images.npz', images=images)
    dirs = [str(work / d) for d in ('vc_out', 'dc40_out')]
    subprocess.run([sys.executable, os.path.join(REPO, 'tests', 'load_exported.py'),
                    str(work / 'images.npz'), str(work / 'logits.npz')] + dirs, check=True,
                   capture_output=True)
    exported = np.load(work / 'logits.npz')
    normalized = images.astype(np.float32) / 127.5 - 1.0

    vc = get_model('vc')
    tuned = hdf5_io.read_hdf5(str(work / 'vc_tuned.hdf5'))
    info = json.loads((work / 'vc_out' / 'export.json').read_text())
    alive = [int(m.sum()) for _, m in sorted(tuned.masks.items())]
    assert info['widths'] == alive and info['flops'] == flops.count_flops(vc, alive)
    masks = tuned.masks
    feed = lambda b: {b.base_masks[i]: masks[i] for i in masks}  # noqa: E731
    references = [
        (predict_logits(vc, VC_DEPS, tuned.weights, normalized,
                        builder_factory=masked_builder_factory(sorted(masks)), feed_fn=feed),
         evaluate_weights(vc, tuned, synthetic_dir, 500, 'vc_tuned.hdf5').top1)]
    dc40, f = get_model('dc40'), hdf5_io.read_hdf5(str(work / 'dc40.hdf5'))
    logits = predict_logits(dc40, DC40_DEPS, f.weights, normalized)  # eval's graph, these images
    references.append((logits, np.mean(logits.argmax(1) == labels)))
    for i, (logits, top1) in enumerate(references):
        scale = np.abs(logits).max()
        saved = exported['saved%d_logits' % i]
        assert np.abs(saved - logits).max() <= 1e-4 * scale, i
        assert np.mean(saved.argmax(1) == labels) == top1, i
        probabilities = exported['saved%d_probabilities' % i]
        np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
        assert (probabilities.argmax(1) == saved.argmax(1)).all()
    lite = exported['tflite0_logits']
    assert np.abs(lite - references[0][0]).max() <= 1e-3 * np.abs(references[0][0]).max()
    assert np.mean(lite.argmax(1) == labels) == references[0][1]
    assert 'tflite1_logits' not in exported


def test_summary_of_a_tuned_file_counts_the_masked_model(work):
    work, outcomes = work
    outcome = outcomes['summary vc_tuned.hdf5 --json']
    assert outcome['code'] == 0, outcome
    summary = json.loads(outcome['stdout'])
    alive = [int(m.sum()) for _, m in sorted(hdf5_io.read_hdf5(
        str(work / 'vc_tuned.hdf5')).masks.items())]
    vc = get_model('vc')
    assert summary['model'] == 'vc' and summary['widths'] == alive and summary['masked']
    assert summary['base']['widths'] == list(vc.default_deps)
    assert summary['total']['flops'] == flops.count_flops(vc, alive)
    assert summary['total']['params'] == flops.count_params(vc, alive)


def test_bad_input_ends_with_one_error_line_and_writes_nothing(work):
    work, outcomes = work
    expected = {
        'export missing.hdf5 --out bad1': 'weights file missing.hdf5 does not exist',
        'export alien.hdf5 --out bad2': 'alien.hdf5 is not a weights file of a known '
                                        'architecture',
        'export vc_tuned.hdf5 --out not_a_dir/bad3': 'cannot write not_a_dir/bad3',
        'export vc_tuned.hdf5 --out taken': 'taken already exists',
        'export dc40.hdf5 --out bad4 --model vc': 'dc40.hdf5 does not fit the model vc',
        'export dc40.hdf5': 'export needs --out DIR',
        'summary dc40.hdf5 --base vc_tuned.hdf5': '--base vc_tuned.hdf5 holds a vc, but '
                                                  'dc40.hdf5 holds a dc40',
        'summary dc40.hdf5 --out x': '--out is a flag of export, export-keras, import, import-keras and latency-table, not of summary',
        'report': 'has no results.json',
    }
    for case, message in expected.items():
        outcome = outcomes[case]
        errors = [l for l in outcome['stderr'].splitlines() if l.startswith('error: ')]
        assert outcome['code'] == 2 and len(errors) == 1 and message in errors[0], (case, outcome)
    assert not any((work / d).exists() for d in ('bad1', 'bad2', 'bad4', 'x'))
    assert [p.name for p in (work / 'taken').iterdir()] == ['x']
    assert not [p for p in work.iterdir() if '.tmp-' in p.name]
    assert not list(work.glob('*.png'))


def test_a_driver_starts_quietly_and_a_full_disk_is_one_error(work):
    """A fresh driver process writes its own lines only (no CUDA probe, no start-up notices): here
    one error line, for an export that meets a full disk (a file size limit: writes fail with
    EFBIG like ENOSPC), after which nothing is left."""
    work, _ = work

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
    result = subprocess.run([sys.executable, CSGD, 'export', 'vc_tuned.hdf5', '--out', 'full'],
                            cwd=work, capture_output=True, text=True, preexec_fn=small_files)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ['error: cannot write full (File too large); run in a '
                                          'writable directory with free space. Files already '
                                          'finished are kept, and the same command continues '
                                          'from them'], result.stderr
    assert not [p for p in work.iterdir() if 'full' in p.name]


def test_startup_noise_is_recognized_and_nothing_else():
    noise = [
        'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
        'I0000 00:00:1795291171.248921   16288 port.cc:153] oneDNN custom operations are on. You '
        'may see slightly different numerical results',
        'I0000 00:00:1795291171.249443   16288 cudart_stub.cc:31] Could not find cuda drivers on '
        'your machine, GPU will not be used.',
        'I0000 00:00:1795291177.106328   16549 cpu_feature_guard.cc:227] This TensorFlow binary is '
        'optimized to use available CPU instructions in performance-critical operations.',
        'To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild '
        'TensorFlow with the appropriate compiler flags.']
    probe = ('E0000 00:00:1795291175.719412   16288 cuda_platform.cc:52] failed call to cuInit: '
             'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)')
    assert all(startup_noise(line, False, False) for line in noise + [probe])
    assert not startup_noise(probe, True, False) and not startup_noise(probe, False, True)
    for real in ('E0000 00:00:1795291175.7 16288 cuda_driver.cc:1] CUDA_ERROR_OUT_OF_MEMORY',
                 'W0000 00:00:1795291175.7 16288 op_kernel.cc:1] OP_REQUIRES failed',
                 'Traceback (most recent call last):', 'ImportError: libcuda.so.1'):
        assert not startup_noise(real, False, False)
