"""bench/gpu_check.sh's last step: its pieces (steps.tsv, the pytest report, the JSON of
bench/train_throughput.py, the smoke runs' results.json, nvidia-smi's GPU list) made into its one
JSON file and the rows of docs/speed.md's GPU table; a missing or non-finite figure is an error,
not a result."""

import argparse
import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tf_benchmarks.files.atomic import write_json  # noqa: E402

FORMAT = 'gpu-check-v1'
TRAIN_MODELS = ('vc', 'dc40', 'src56', 'sres50')
REPLICA_MODELS = ('vc', 'dc40', 'src56')   # the table's rows (a dry run measures vc only)
SECTIONS = ('tests', 'training', 'replicas', 'aofp', 'csgd')
# the steps of gpu_check.sh behind each section
SECTION_STEPS = {'tests': ('tests',), 'training': ('throughput',), 'replicas': ('throughput',),
                 'aofp': ('data', 'aofp_train', 'aofp_prune'),
                 'csgd': ('data', 'csgd_train', 'csgd1')}


class CheckFailed(Exception):
    """A section without its figures (its step failed, or a figure is missing or not finite)."""


def finite(value, what):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or \
            not math.isfinite(value):
        raise CheckFailed('%s is %r, not a finite number' % (what, value))
    return value


LOG_TAIL = 30  # lines of a failed step's output kept in the JSON


def read_steps(work):
    """{step: {'status', 'wall_s', 'command'}} from steps.tsv (one line per step, tab-separated),
    with the end of the output of a step that failed ('log_tail')."""
    steps = {}
    with open(os.path.join(work, 'steps.tsv')) as f:
        for name, status, seconds, command in csv.reader(f, delimiter='\t'):
            steps[name] = {'status': int(status), 'wall_s': round(float(seconds), 1),
                           'command': command}
            log = os.path.join(work, name + '.log')
            if int(status) != 0 and os.path.exists(log):
                with open(log, errors='replace') as f_log:
                    steps[name]['log_tail'] = f_log.read().splitlines()[-LOG_TAIL:]
    return steps


def _step_ok(steps, name):
    if name not in steps:
        raise CheckFailed('step %s did not run' % name)
    if steps[name]['status'] != 0:
        raise CheckFailed('step %s failed with exit status %d (the end of its output: the '
                          'step\'s log_tail)' % (name, steps[name]['status']))


def read_gpus(work):
    """nvidia-smi's GPUs (gpus.csv: index, name, compute capability, memory), or [] (dry run)."""
    path = os.path.join(work, 'gpus.csv')
    if not os.path.exists(path):
        return []
    gpus = []
    with open(path) as f:
        for row in csv.reader(f):
            if row:
                index, name, capability, memory = [c.strip() for c in row]
                gpus.append({'index': int(index), 'name': name, 'compute_capability': capability,
                             'memory': memory})
    return gpus


def tests_section(work, steps):
    """Counts of pytest's JUnit report (a failed test is a figure, reported, not an error here)."""
    path = os.path.join(work, 'tests.xml')
    if not os.path.exists(path):
        raise CheckFailed('pytest wrote no report (the end of its output: the step\'s log_tail)')
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == 'testsuite' else root.find('testsuite')
    counts = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
    out = {'command': steps['tests']['command'], 'wall_s': finite(steps['tests']['wall_s'],
                                                                   'the tests\' time'),
           'passed': counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped'],
           'failed': counts['failures'], 'errors': counts['errors'], 'skipped': counts['skipped']}
    if counts['tests'] == 0:
        raise CheckFailed('pytest ran no test')
    return out


def _throughput(work):
    with open(os.path.join(work, 'throughput.json')) as f:
        return json.load(f)


def _median(results, key):
    if key not in results:
        raise CheckFailed('bench/train_throughput.py has no figure "%s"' % key)
    return finite(results[key]['median_images_per_sec'], key + ' images/s')


def training_section(work, steps, mixed):
    data = _throughput(work)
    results, args = data['results'], data['args']
    models = {}
    for m in TRAIN_MODELS:
        models[m] = {}
        for precision in ('fp32', mixed):
            suffix = '' if precision == 'fp32' else ' ' + precision
            ours, torch = _median(results, m + ' ours' + suffix), _median(results,
                                                                          m + ' torch' + suffix)
            models[m][precision] = {
                'ours': round(ours, 2), 'torch': round(torch, 2),
                'ours_over_torch': round(finite(ours / torch, m + ' ours / torch'), 3),
                'ours_device': results[m + ' ours' + suffix]['device'],
                'torch_device': results[m + ' torch' + suffix]['device']}
    return {'command': steps['throughput']['command'], 'wall_s': steps['throughput']['wall_s'],
            'batch_size': args['batch_size'], 'steps': args['steps'], 'warmup': args['warmup'],
            'sres50': {'batch_size': args['resnet_batch_size'], 'image_size': args['image_size'],
                       'steps': args['resnet_steps'], 'warmup': args['resnet_warmup']},
            'mixed_precision': mixed, 'images_per_sec': models}


def replicas_section(work, steps):
    data = _throughput(work)
    results, args = data['results'], data['args']
    n = args['num_devices']
    models = {}
    for m in (args['replicas_models'] or args['models']).split(','):
        one, many = _median(results, m + ' ours'), _median(results, '%s mirrored x%d' % (m, n))
        models[m] = {'one_device': round(one, 2), 'all_devices': round(many, 2),
                     'speedup': round(finite(many / one, m + ' mirrored speed-up'), 3),
                     'devices': results['%s mirrored x%d' % (m, n)]['device']}
    return {'command': steps['throughput']['command'], 'num_devices': n,
            'batch_per_device': args['batch_size'], 'images_per_sec': models}


def _results_json(work, run):
    path = os.path.join(work, run, 'results.json')
    if not os.path.exists(path):
        raise CheckFailed('%s wrote no results.json' % run)
    with open(path) as f:
        return json.load(f)['runs']


def aofp_section(work, steps):
    run = _results_json(work, 'aofp')['prune']
    iteration = run['iterations'][-1]
    tuned, fted = iteration['tuned'], iteration['finetuned']
    return {'model': run['model'],
            'commands': [steps[s]['command'] for s in ('aofp_train', 'aofp_prune')],
            'wall_s': round(finite(steps['aofp_train']['wall_s'] + steps['aofp_prune']['wall_s'],
                                   'AOFP\'s time'), 1),
            'search_steps': tuned.get('search_steps'),
            'tuned_top1': finite(tuned['top1'], 'AOFP\'s tuned top-1'),
            'finetuned_top1': finite(fted['top1'], 'AOFP\'s finetuned top-1'),
            'flops_removed': finite(fted['flops_removed'], 'AOFP\'s FLOPs removed'),
            'test_images': fted['images']}


def csgd_section(work, steps):
    run = _results_json(work, 'csgd')['csgd1']
    iteration = run['iterations'][-1]
    trained, trimmed = iteration['trained'], iteration['trimmed']
    return {'model': run['model'],
            'commands': [steps[s]['command'] for s in ('csgd_train', 'csgd1')],
            'wall_s': round(finite(steps['csgd_train']['wall_s'] + steps['csgd1']['wall_s'],
                                   'C-SGD\'s time'), 1),
            'trained_top1': finite(trained['top1'], 'C-SGD\'s top-1 before trimming'),
            'trimmed_top1': finite(trimmed['top1'], 'C-SGD\'s top-1 after trimming'),
            'flops_removed': finite(trimmed['flops_removed'], 'C-SGD\'s FLOPs removed'),
            'test_images': trimmed['images']}


BUILDERS = {'tests': lambda work, steps, mixed: tests_section(work, steps),
            'training': training_section,
            'replicas': lambda work, steps, mixed: replicas_section(work, steps),
            'aofp': lambda work, steps, mixed: aofp_section(work, steps),
            'csgd': lambda work, steps, mixed: csgd_section(work, steps)}


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu():
    try:
        with open('/proc/cpuinfo') as f:
            return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or 'unknown CPU'


def build(work, mixed, dry_run, command):
    steps = read_steps(work)
    gpus = read_gpus(work)
    sections, failures = {}, {}
    for name in SECTIONS:
        try:
            if name != 'tests':  # a failed test is reported in the section's counts
                for step in SECTION_STEPS[name]:
                    _step_ok(steps, step)
            sections[name] = BUILDERS[name](work, steps, mixed)
        except (CheckFailed, OSError, KeyError, ValueError) as e:
            failures[name] = '%s: %s' % (type(e).__name__, e) if not isinstance(
                e, CheckFailed) else str(e)
    training = sections.get('training', {}).get('images_per_sec', {})
    devices = {'gpus': gpus,
               'tensorflow': training.get('vc', {}).get('fp32', {}).get('ours_device'),
               'torch': training.get('vc', {}).get('fp32', {}).get('torch_device')}
    report = {'format': FORMAT, 'dry_run': dry_run, 'command': command,
              'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
              'machine': {'cpu': _cpu(), 'cores': os.cpu_count(),
                          'python': platform.python_version(),
                          'tensorflow': _version('tensorflow'), 'torch': _version('torch')},
              'devices': devices, 'mixed_precision': mixed,
              'wall_s': round(sum(s['wall_s'] for s in steps.values()), 1), 'steps': steps,
              'sections': sections, 'failures': failures}
    report['readme_rows'] = rows(report)
    return report


def _cell(value, fmt='%.1f'):
    return 'not measured' if value is None else fmt % value


def rows(report):
    """The rows of docs/speed.md's GPU table (measurement | ours | PyTorch | ours / PyTorch); the
    first cells are the same in every run (the mixed precision named in the cells), the others
    'not measured' where a section failed."""
    s, mixed = report['sections'], report['mixed_precision']
    gpus = report['devices']['gpus']
    names = ', '.join('%s (%s)' % (g['name'], g['compute_capability']) for g in gpus) or \
        'none: a dry run on %s' % report['machine']['cpu']
    out = ['| GPUs (compute capability), date | %s; %s | — | — |' % (names, report['date']),
           '| versions | TensorFlow %s | PyTorch %s | — |' % (report['machine']['tensorflow'],
                                                             report['machine']['torch'])]
    training = s.get('training')
    for m in TRAIN_MODELS:
        for precision, label in (('fp32', 'fp32'), (mixed, 'mixed')):
            figures = training['images_per_sec'][m][precision] if training else {}
            tag = ' %s' % precision if precision != 'fp32' else ''
            out.append('| `%s` %s training, images/s | %s | %s | %s |' % (
                m, label, _cell(figures.get('ours'), '%.1f' + tag),
                _cell(figures.get('torch'), '%.1f' + tag),
                _cell(figures.get('ours_over_torch'), '%.2fx')))
    replicas = s.get('replicas')
    for m in REPLICA_MODELS:
        figures = replicas['images_per_sec'].get(m, {}) if replicas else {}
        out.append('| `%s` `--strategy mirrored`, all devices / one device | %s | — | — |' % (
            m, _cell(figures.get('speedup'), '%%.2fx on %d devices' % replicas['num_devices']
                     if replicas else '')))
    a, c, t = s.get('aofp'), s.get('csgd'), s.get('tests')
    out.append('| AOFP smoke run (train, prune): s; finetuned top-1; FLOPs removed '
               '| %s | — | — |' % ('`%s`: %.0f s; %.2f%%; %.1f%%' % (
                   a['model'], a['wall_s'], 100 * a['finetuned_top1'], 100 * a['flops_removed'])
                   if a else 'not measured'))
    out.append('| C-SGD smoke run (train, csgd1): s; top-1 after trimming; FLOPs removed '
               '| %s | — | — |' % ('`%s`: %.0f s; %.2f%%; %.1f%%' % (
                   c['model'], c['wall_s'], 100 * c['trimmed_top1'], 100 * c['flops_removed'])
                   if c else 'not measured'))
    out.append('| device-placement tests (`tests/test_replicas.py`): passed / failed / errors | '
               '%s | — | — |' % ('%d / %d / %d in %.0f s' % (t['passed'], t['failed'],
                                                             t['errors'], t['wall_s'])
                                 if t else 'not measured'))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work', required=True, help='gpu_check.sh\'s working folder')
    parser.add_argument('--json', required=True)
    parser.add_argument('--mixed', required=True, choices=('bf16', 'fp16'))
    parser.add_argument('--dry_run', action='store_true')
    parser.add_argument('--command', required=True)
    args = parser.parse_args()
    report = build(args.work, args.mixed, args.dry_run, args.command)
    write_json(args.json, report)
    print('\nThe rows of the GPU table in docs/speed.md%s:\n' % (
        ' (a dry run: CPU figures, not GPU ones)' if args.dry_run else ''))
    print('\n'.join(report['readme_rows']))
    print('\nwrote %s (%.0f s of steps)' % (args.json, report['wall_s']))
    for name, message in report['failures'].items():
        print('error: section %s: %s' % (name, message), file=sys.stderr)
    tests = report['sections'].get('tests', {})
    if report['failures'] or tests.get('failed') or tests.get('errors'):
        sys.exit(1)


if __name__ == '__main__':
    main()
