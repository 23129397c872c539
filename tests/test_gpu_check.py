"""bench/gpu_check.sh --dry_run on this CPU: every step runs at its smallest size and the one JSON
file has every section with finite figures, the device names and the rows of docs/speed.md's GPU
table (the same first cells as the table; the dry run compares with PyTorch, so it is skipped where
torch is not installed). The report of failed steps and non-finite figures; bad options, no GPU
and GPUs the frameworks do not see end with one error line and exit 2."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, 'bench', 'gpu_check.sh')
SPEED = os.path.join(REPO, 'docs', 'speed.md')
NO_TORCH = importlib.util.find_spec('torch') is None


def run(args, cwd):
    return subprocess.run(['bash', SCRIPT, '--python', sys.executable] + list(args), cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('gpu_check')
    result = run(['--dry_run', '--json', 'dry.json'], work)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return json.loads((work / 'dry.json').read_text()), result.stdout


def _numbers(value):
    """Every number in a JSON value (bools aside)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def table_first_cells():
    """The first cells of the GPU table's rows in docs/speed.md."""
    lines = open(SPEED, encoding='utf-8').read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('| GPU check: '))
    cells = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells.append(line.split(' | ')[0][2:])
    return cells


@pytest.mark.skipif(NO_TORCH, reason='the GPU check compares with PyTorch: pip install torch')
def test_the_dry_run_writes_every_section_with_finite_figures(dry_run):
    report, stdout = dry_run
    assert report['format'] == 'gpu-check-v1' and report['dry_run'] is True
    assert report['command'] == 'bash bench/gpu_check.sh --dry_run --json dry.json'
    assert report['failures'] == {}
    assert report['mixed_precision'] == 'fp16'   # the path of GPUs without bfloat16
    assert set(report['sections']) == {'tests', 'training', 'replicas', 'aofp', 'csgd'}
    assert set(report['steps']) == {'tests', 'throughput', 'data', 'aofp_train', 'aofp_prune',
                                    'csgd_train', 'csgd1'}
    assert all(step['status'] == 0 and step['wall_s'] > 0 for step in report['steps'].values())
    for name, section in report['sections'].items():
        numbers = _numbers(section)
        assert numbers and all(math.isfinite(n) for n in numbers), (name, section)
    # the CPU, named as such: no GPU in a dry run
    assert report['devices']['gpus'] == []
    assert report['devices']['tensorflow'] == 'CPU' and report['devices']['torch'] == 'CPU'
    training = report['sections']['training']['images_per_sec']
    assert set(training) == {'vc', 'dc40', 'src56', 'sres50'}
    for model, precisions in training.items():
        assert set(precisions) == {'fp32', 'fp16'}
        for figures in precisions.values():
            assert figures['ours'] > 0 and figures['torch'] > 0
            assert figures['ours_over_torch'] == pytest.approx(
                figures['ours'] / figures['torch'], rel=0.02)
    replicas = report['sections']['replicas']
    assert replicas['num_devices'] == 2 and set(replicas['images_per_sec']) == {'vc'}
    assert replicas['images_per_sec']['vc']['speedup'] > 0
    tests = report['sections']['tests']
    assert tests['passed'] >= 5 and tests['failed'] == 0 and tests['errors'] == 0
    for method, top1 in (('aofp', 'finetuned_top1'), ('csgd', 'trimmed_top1')):
        section = report['sections'][method]
        assert section['model'] == 'vc' and 0 <= section[top1] <= 1 and section['wall_s'] > 0
        assert section['test_images'] == 32
    assert report['sections']['csgd']['flops_removed'] > 0.3
    # the rows printed and stored fill the table of docs/speed.md, row for row
    rows = report['readme_rows']
    assert [r.split(' | ')[0][2:] for r in rows] == table_first_cells()
    assert all(r.count(' | ') == 3 and r.endswith(' |') for r in rows)
    assert '\n'.join(rows) in stdout
    assert rows[2] == '| `vc` fp32 training, images/s | %.1f | %.1f | %.2fx |' % (
        training['vc']['fp32']['ours'], training['vc']['fp32']['torch'],
        training['vc']['fp32']['ours_over_torch'])
    assert sum('not measured' in r for r in rows) == 2   # dc40 and src56 under --strategy mirrored


def _pieces(work, nan_key):
    """A working folder as gpu_check.sh leaves it: AOFP's prune failed, one test failed, and the
    figure `nan_key` of bench/train_throughput.py is NaN."""
    steps = [('tests', 1), ('throughput', 0), ('data', 0), ('aofp_train', 0), ('aofp_prune', 3),
             ('csgd_train', 0), ('csgd1', 0)]
    (work / 'steps.tsv').write_text(''.join('%s\t%d\t%.2f\tpython %s.py\n' % (n, status, 1.5, n)
                                            for n, status in steps))
    (work / 'aofp_prune.log').write_text('\n'.join('line %d' % i for i in range(40)))
    (work / 'tests.xml').write_text('<testsuites><testsuite tests="3" failures="1" errors="0" '
                                    'skipped="0"/></testsuites>')
    keys = ['%s %s%s' % (m, fw, p) for m in ('vc', 'dc40', 'src56', 'sres50')
            for fw in ('ours', 'torch') for p in ('', ' bf16')] + \
        ['%s mirrored x4' % m for m in ('vc', 'dc40', 'src56')]
    results = {k: {'median_images_per_sec': float('nan') if k == nan_key else 100.0,
                   'device': 'GPU:0 Tesla V100'} for k in keys}
    (work / 'throughput.json').write_text(json.dumps({'results': results, 'args': {
        'batch_size': 64, 'steps': 20, 'warmup': 5, 'resnet_batch_size': 32, 'image_size': 224,
        'resnet_steps': 10, 'resnet_warmup': 3, 'num_devices': 4, 'replicas_models': None,
        'models': 'vc,dc40,src56'}}))
    (work / 'csgd').mkdir()
    entry = {'top1': 0.8, 'flops_removed': 0.5, 'images': 1000}
    (work / 'csgd' / 'results.json').write_text(json.dumps({'runs': {'csgd1': {
        'model': 'dc40', 'iterations': [{'trained': entry, 'trimmed': entry}]}}}))
    (work / 'gpus.csv').write_text('0, Tesla V100-SXM2-16GB, 7.0, 16384 MiB\n')


def test_failed_steps_and_non_finite_figures_are_failures_not_results(tmp_path):
    """The report of a run with failures (no TensorFlow needed): each failed section is named with
    its reason, a failed step's last lines are kept, the others are reported, the table's cells say
    not measured, and the exit status is 1."""
    _pieces(tmp_path, 'dc40 torch bf16')
    out = tmp_path / 'check.json'
    result = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'gpu_check_report.py'),
                             '--work', str(tmp_path), '--json', str(out), '--mixed', 'bf16',
                             '--command', 'bash bench/gpu_check.sh'], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    report = json.loads(out.read_text())
    assert set(report['failures']) == {'training', 'aofp'}
    assert report['failures']['training'] == 'dc40 torch bf16 images/s is nan, not a finite number'
    assert report['failures']['aofp'].startswith('step aofp_prune failed with exit status 3')
    assert report['steps']['aofp_prune']['log_tail'] == ['line %d' % i for i in range(10, 40)]
    assert report['sections']['tests'] == {'command': 'python tests.py', 'wall_s': 1.5,
                                           'passed': 2, 'failed': 1, 'errors': 0, 'skipped': 0}
    assert report['sections']['replicas']['images_per_sec']['vc']['speedup'] == 1.0
    assert report['sections']['csgd']['trimmed_top1'] == 0.8
    assert report['devices']['gpus'] == [{'index': 0, 'name': 'Tesla V100-SXM2-16GB',
                                          'compute_capability': '7.0', 'memory': '16384 MiB'}]
    rows = report['readme_rows']
    assert rows[0].startswith('| GPUs (compute capability), date | Tesla V100-SXM2-16GB (7.0); ')
    assert rows[2] == ('| `vc` fp32 training, images/s | not measured | not measured | '
                       'not measured |')
    assert rows[10] == '| `vc` `--strategy mirrored`, all devices / one device | 1.00x on 4 ' \
        'devices | — | — |'
    assert 'not measured' in rows[13] and '`dc40`: 3 s; 80.00%; 50.0%' in rows[14]
    assert rows[15].endswith('| 2 / 1 / 0 in 2 s | — | — |')
    assert 'error: section training: dc40 torch bf16 images/s is nan' in result.stderr


def test_the_table_says_not_measured_and_the_command():
    text = open(SPEED, encoding='utf-8').read()
    assert 'bash bench/gpu_check.sh --json gpu_check.json' in text
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('| GPU check: '))
    body = [l for l in lines[start + 2:start + 2 + len(table_first_cells())]]
    assert len(body) == 16 and all('not measured' in line for line in body)


@pytest.mark.parametrize('args, message', [
    (['--mixed', 'fp8'], 'error: --mixed must be auto, bf16 or fp16, got fp8'),
    (['--frobnicate'], 'error: unknown option --frobnicate'),
    (['--json', 'no/such/folder/x.json'], 'error: no folder '),
])
def test_bad_options_end_with_one_error_line(args, message, tmp_path):
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count('\n') == 1, result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(NO_TORCH, reason='the check asks for torch before the GPUs')
def test_gpus_that_the_frameworks_do_not_see_are_refused(tmp_path):
    """nvidia-smi lists a GPU (a fake one here) that TensorFlow and PyTorch do not see (CPU
    builds): the check stops before measuring the CPU, and writes nothing."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'nvidia-smi').write_text(
        '#!/bin/sh\necho "0, Tesla V100-SXM2-16GB, 7.0, 16384 MiB"\n')
    (bin_dir / 'nvidia-smi').chmod(0o755)
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, PATH='%s:%s' % (bin_dir, os.environ['PATH']))
    result = subprocess.run(['bash', SCRIPT, '--python', sys.executable], cwd=work,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'Tesla V100-SXM2-16GB, 7.0' in result.stdout
    assert 'sees 0 GPU(s)' in result.stdout
    assert result.stderr.splitlines()[-1].startswith('error: TensorFlow or PyTorch sees no GPU')
    assert os.listdir(work) == []


@pytest.mark.skipif(NO_TORCH, reason='the check asks for torch before the GPUs')
def test_without_a_gpu_the_real_check_refuses_to_run(tmp_path):
    """No nvidia-smi on the PATH: the check says how to run dry instead, and writes nothing."""
    env = dict(os.environ, PATH='/usr/bin:/bin')
    if subprocess.run(['bash', '-c', 'command -v nvidia-smi'], env=env,
                      capture_output=True).returncode == 0:
        pytest.skip('this machine has nvidia-smi')
    result = subprocess.run(['bash', SCRIPT, '--python', sys.executable], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith('error: no nvidia-smi') and '--dry_run' in result.stderr
    assert os.listdir(tmp_path) == []
