"""`--precision bf16` against fp32 in accuracy (issue 26, item 1): per precision and seed, in a
working directory of its own, the AOFP and C-SGD smoke runs on `vc`, and the top-1 of the base, of
AOFP's finetuned and of C-SGD's trimmed model, with each precision's mean and standard deviation
over the seeds and bf16 - fp32 per method, as one JSON and a markdown table.

    python datasets/download_and_convert_cifar10.py --dataset_dir /tmp/sub \\
        --batches_dir ../shared/data/cifar10-subset/cifar-10-batches-py
    python bench/bf16_accuracy.py --data_dir /tmp/sub --json bf16_accuracy.json  # 6 runs
    python bench/bf16_accuracy.py --data_dir /tmp/syn --quick --seeds 1          # the script itself
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AOFP = os.path.join(REPO, 'aofp', 'aofp_standalone.py')
CSGD = os.path.join(REPO, 'csgd', 'csgd_standalone.py')
BASE = 'vc_scratch_savedweights.hdf5'
PRECISIONS = ('fp32', 'bf16', 'bf16_activations')  # each other one against fp32
METHODS = (('base', 'base'), ('aofp', 'AOFP finetuned'), ('csgd', 'C-SGD trimmed'))
TOLERANCE = 1.0  # points: the bf16 mean within this of the fp32 mean (issue 26)
# Epochs of train (E1), AOFP's finetuning (E2), C-SGD (E3) and the bound of AOFP's search. The
# defaults were set by one fp32 run on the real subset on a 2-core AMD EPYC shared with other jobs
# (load average 4.0-4.7): train 223 s, prune 136 s (the search reached 30% in 370 steps), csgd1
# 109 s, 7.8 minutes; at the throughput docs/results.md measured on 2 quiet cores, about 4 minutes
# per (precision, seed) in fp32, and less in bf16.
FULL = dict(train_epochs=30, finetune_epochs=8, csgd_epochs=6, search_max_epochs=None)
QUICK = dict(train_epochs=1, finetune_epochs=1, csgd_epochs=1, search_max_epochs=1)
QUICK_DEPS = '4,4,8,8,8,8,8,8,8,8,8,8,8'  # --quick: a tiny vc


class Failed(Exception):
    """A driver command that did not finish; the message names it and ends with its log's tail."""


def run_command(script, mode, args, cwd, log_name):
    """`python script mode args` in `cwd`, its output to `log_name` there; the wall time in s."""
    os.makedirs(cwd, exist_ok=True)
    command = [sys.executable, script, mode] + [str(a) for a in args]
    start = time.time()
    with open(os.path.join(cwd, log_name), 'w') as log:
        log.write('$ %s\n' % ' '.join(command))
        log.flush()
        code = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONUNBUFFERED='1')).returncode
    if code != 0:
        with open(os.path.join(cwd, log_name)) as log:
            tail = ''.join(log.readlines()[-15:])
        raise Failed('%s %s in %s ended with exit status %d; the end of %s:\n%s'
                     % (os.path.basename(script), mode, cwd, code, log_name, tail))
    return round(time.time() - start, 1)


def read_results(directory):
    with open(os.path.join(directory, 'results.json')) as f:
        return json.load(f)['runs']


def stage_seconds(directory):
    """The wall time run.json records for each finished stage of `directory`, summed."""
    with open(os.path.join(directory, 'run.json')) as f:
        stages = json.load(f)['stages'].values()
    return round(sum(s.get('wall_s') or 0.0 for s in stages if s.get('status') == 'done'), 1)


def percent(fraction):
    return None if fraction is None else round(100.0 * fraction, 4)


def one_run(args, epochs, precision, seed, work_dir, log=print):
    """The commands of one (precision, seed) in work_dir/<precision>_seed<seed>, each with
    `--precision P --seed S`, and their figures (from results.json):

        aofp/$ aofp_standalone.py train --model vc --preset smoke --max_epochs E1
        aofp/$ aofp_standalone.py prune --model vc --preset smoke --itr_schedule 0.3 \\
                   --finetune_epochs E2
        csgd/$ csgd_standalone.py csgd1 --model vc --preset smoke --target_deps 5/8 \\
                   --max_epochs E3 --init_hdf5 ../aofp/vc_scratch_savedweights.hdf5

    C-SGD starts from AOFP's base: both drivers' `train` write vc_scratch_savedweights.hdf5 at the
    same smoke widths (C-SGD's own `train` has its LR boundaries at 1/3 and 2/3 instead of 3/4 and
    9/10 and does not double the BN betas' gradients), so one base serves both methods and halves
    the base training; its top-1 is csgd1's evaluation of its start file. Evaluations run in
    float32 (the drivers have no bf16 evaluation), so what the precisions change is the training.
    Finished stages are skipped when the script runs again (run.json), so a stopped check goes on
    where it stopped; `wall_s` is what each command took in this invocation, `stage_wall_s` what
    run.json records for the stages. The stages' latency measurement is off (`--nolatency`); it
    changes no weight."""
    directory = os.path.join(work_dir, '%s_seed%d' % (precision, seed))
    aofp_dir, csgd_dir = os.path.join(directory, 'aofp'), os.path.join(directory, 'csgd')
    common = ['--model', 'vc', '--preset', 'smoke', '--precision', precision, '--seed', seed,
              '--data_dir', args.data_dir]
    train = common + ['--max_epochs', epochs['train_epochs']]
    if args.quick:
        train += ['--deps', QUICK_DEPS]
    prune = common + ['--itr_schedule', args.itr_schedule, '--finetune_epochs',
                      epochs['finetune_epochs'], '--nolatency']
    if epochs['search_max_epochs'] is not None:
        prune += ['--search_max_epochs', epochs['search_max_epochs']]
    csgd1 = common + ['--target_deps', args.target_deps, '--max_epochs', epochs['csgd_epochs'],
                      '--init_hdf5', os.path.join(aofp_dir, BASE), '--nolatency']
    load = [round(os.getloadavg()[0], 2)]
    wall = {}
    log('%s seed %d: train' % (precision, seed))
    wall['train'] = run_command(AOFP, 'train', train, aofp_dir, 'train.log')
    log('%s seed %d: prune (%.0f s for train)' % (precision, seed, wall['train']))
    wall['prune'] = run_command(AOFP, 'prune', prune, aofp_dir, 'prune.log')
    log('%s seed %d: csgd1 (%.0f s for prune)' % (precision, seed, wall['prune']))
    wall['csgd1'] = run_command(CSGD, 'csgd1', csgd1, csgd_dir, 'csgd1.log')
    load.append(round(os.getloadavg()[0], 2))
    aofp = read_results(aofp_dir)['prune']['iterations'][-1]
    csgd = read_results(csgd_dir)['csgd1']['iterations']
    start, trimmed = csgd[0]['start'], csgd[-1]['trimmed']
    return {
        'precision': precision, 'seed': seed, 'dir': directory, 'wall_s': wall,
        'stage_wall_s': {'aofp': stage_seconds(aofp_dir), 'csgd': stage_seconds(csgd_dir)},
        'load_average': load,
        'base': {'top1': percent(start['top1']), 'loss': start['loss'], 'file': start['file']},
        'aofp': {'top1': percent(aofp['finetuned']['top1']),
                 'tuned_top1': percent(aofp['tuned']['top1']),
                 'flops_removed': percent(aofp['finetuned']['flops_removed']),
                 'widths': aofp['finetuned']['widths'],
                 'search_steps': aofp['tuned'].get('search_steps'),
                 'reached_target': aofp['tuned'].get('reached_target')},
        'csgd': {'top1': percent(trimmed['top1']),
                 'trained_top1': percent(csgd[-1]['trained']['top1']),
                 'flops_removed': percent(trimmed['flops_removed']),
                 'max_cluster_difference': csgd[-1]['trained'].get('max_cluster_difference')},
    }


def summary(runs):
    """Per method and precision n, mean and standard deviation (over the seeds) of the top-1 in
    points; for each precision run beside fp32, its mean - fp32's (`<precision>_minus_fp32`), its
    standard error and whether it is within 1 pt."""
    out = {}
    for method, _ in METHODS:
        entry = {}
        for precision in PRECISIONS:
            values = [r[method]['top1'] for r in runs if r['precision'] == precision]
            if values:
                entry[precision] = {
                    'n': len(values), 'mean': round(statistics.mean(values), 4),
                    'std': round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    'top1': values}
        for other in PRECISIONS[1:]:
            if 'fp32' not in entry or other not in entry:
                continue
            fp32, bf16 = entry['fp32'], entry[other]
            difference = entry['%s_minus_fp32' % other] = round(bf16['mean'] - fp32['mean'], 4)
            if fp32['std'] is not None and bf16['std'] is not None:
                entry['%s_difference_se' % other] = round(math.sqrt(
                    fp32['std'] ** 2 / fp32['n'] + bf16['std'] ** 2 / bf16['n']), 4)
            entry['%s_within_1pt' % other] = abs(difference) <= TOLERANCE
        out[method] = entry
    return out


def cpu():
    """The CPU's model name and its bfloat16 flags (/proc/cpuinfo), and the cores."""
    name, flags = None, []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and name is None:
                    name = value.strip()
                if key.strip() == 'flags' and not flags:
                    flags = sorted(x for x in value.split() if 'bf16' in x or x.startswith('amx'))
    except OSError:
        pass
    return {'model': name, 'bf16_flags': flags, 'cores': os.cpu_count()}


def _cell(value, fmt='%.2f'):
    return '-' if value is None else fmt % value


def table(document):
    """The markdown tables: one row per run, then the means per method."""
    lines = ['| precision | seed | base top-1 | AOFP finetuned top-1 (FLOPs removed) | '
             'C-SGD trimmed top-1 (FLOPs removed) | minutes |', '|---|---|---|---|---|---|']
    for r in document['runs']:
        lines.append('| %s | %d | %s%% | %s%% (%s%%) | %s%% (%s%%) | %.1f |' % (
            r['precision'], r['seed'], _cell(r['base']['top1']), _cell(r['aofp']['top1']),
            _cell(r['aofp']['flops_removed'], '%.1f'), _cell(r['csgd']['top1']),
            _cell(r['csgd']['flops_removed'], '%.1f'), sum(r['wall_s'].values()) / 60))
    run = [p for p in PRECISIONS if any(r['precision'] == p for r in document['runs'])]
    others = [p for p in run if p != 'fp32']
    lines += ['', '| top-1 | %s | %s |' % (
        ' | '.join('%s mean ± sd (n)' % p for p in run),
        ' | '.join('%s − fp32 ± s.e. | within %g pt' % (p, TOLERANCE) for p in others)),
        '|---|' + '---|' * (len(run) + 2 * len(others))]
    for method, label in METHODS:
        entry = document['summary'][method]
        cells = []
        for precision in run:
            p = entry.get(precision)
            cells.append('%s ± %s (%d)' % (_cell(p['mean']), _cell(p['std']), p['n']) if p
                         else '-')
        for other in others:
            difference = entry.get('%s_minus_fp32' % other)
            se = entry.get('%s_difference_se' % other)
            cells.append('%+.2f%s' % (difference, ' ± %.2f' % se if se is not None else '')
                         if difference is not None else '-')
            cells.append({True: 'yes', False: '**no**'}.get(
                entry.get('%s_within_1pt' % other), '-'))
        lines.append('| %s | %s |' % (label, ' | '.join(cells)))
    return lines


def write(path, document):
    """The JSON at `path` (none without one), whole or not at all."""
    if not path:
        return
    with open(path + '.tmp', 'w') as f:
        json.dump(document, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(path + '.tmp', path)


def parse_seeds(text):
    seeds = [int(s) for s in text.split(',') if s.strip()]
    if not seeds or any(not 0 <= s < 2 ** 31 for s in seeds):
        raise argparse.ArgumentTypeError('seeds are integers from 0 to 2147483647, got %r' % text)
    return seeds


def parse_precisions(text):
    precisions = [p.strip() for p in text.split(',') if p.strip()]
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise argparse.ArgumentTypeError('precisions are among %s, got %r'
                                         % (', '.join(PRECISIONS), text))
    return precisions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', required=True, help='CIFAR-10 tfrecords (the converter\'s '
                        '--dataset_dir), e.g. the real subset')
    parser.add_argument('--precisions', type=parse_precisions, default=list(PRECISIONS))
    parser.add_argument('--seeds', type=parse_seeds, default=[1, 2, 3])
    parser.add_argument('--json', help='write the figures here (after every run)')
    parser.add_argument('--work_dir', help='one directory per (precision, seed) is made here '
                        '(default: a new one under the temporary directory); an existing one '
                        'continues')
    parser.add_argument('--train_epochs', type=float, help='E1, `train` (default %g; --quick 1)'
                        % FULL['train_epochs'])
    parser.add_argument('--finetune_epochs', type=float, help='E2, AOFP\'s finetuning (default '
                        '%g; --quick 1)' % FULL['finetune_epochs'])
    parser.add_argument('--csgd_epochs', type=float, help='E3, csgd1 (default %g; --quick 1)'
                        % FULL['csgd_epochs'])
    parser.add_argument('--search_max_epochs', type=float, help='the bound of AOFP\'s search '
                        '(default: the smoke preset\'s, 12; --quick 1)')
    parser.add_argument('--itr_schedule', default='0.3', help='AOFP\'s FLOPs target (0.3)')
    parser.add_argument('--target_deps', default='5/8', help='C-SGD\'s widths (5/8)')
    parser.add_argument('--quick', action='store_true', help='1 epoch of everything on a tiny '
                        'vc: checks the script, not bf16')
    args = parser.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)
    if not os.path.isdir(args.data_dir):
        parser.error('--data_dir %s is not a directory' % args.data_dir)
    epochs = dict(QUICK if args.quick else FULL)
    for key in epochs:
        if getattr(args, key) is not None:
            epochs[key] = getattr(args, key)
    work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix='bf16_accuracy_'))
    os.makedirs(work_dir, exist_ok=True)
    print('working directory %s; epochs %s' % (work_dir, epochs))
    document = {'format': 'bf16-accuracy-v1', 'command': [sys.executable] + sys.argv,
                'data_dir': args.data_dir, 'work_dir': work_dir, 'cpu': cpu(),
                'settings': dict(epochs, itr_schedule=args.itr_schedule,
                                 target_deps=args.target_deps, quick=args.quick,
                                 deps=QUICK_DEPS if args.quick else 'smoke preset'),
                'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'runs': []}
    for seed in args.seeds:
        for precision in args.precisions:
            try:
                document['runs'].append(one_run(args, epochs, precision, seed, work_dir))
            except Failed as e:
                print('error: %s' % e, file=sys.stderr)
                return 1
            document['summary'] = summary(document['runs'])
            write(args.json, document)
    document['finished'] = time.strftime('%Y-%m-%d %H:%M:%S %Z')
    write(args.json, document)
    print('\n'.join(table(document)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
