"""`report`: PNG plots drawn from a working directory's results.json: top-1 against FLOPs removed over
the AOFP iterations, C-SGD against magnitude pruning at the same structure, widths per layer (base
and every pruned model), C-SGD's largest difference within clusters over the training steps, and
the measured speed-up against FLOPs removed over the stages (with its numbers printed and in
report_<run>_latency.json)."""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from tf_benchmarks.core.errors import UserError  # noqa: E402
from tf_benchmarks.files.atomic import write_json  # noqa: E402
from tf_benchmarks.runs.results import RESULTS, read_results  # noqa: E402

_PHASE_LABELS = {'tuned': 'tuned (masked; equals the pruned model)', 'pruned': 'pruned',
                 'finetuned': 'finetuned', 'start': 'start', 'trained': 'C-SGD trained',
                 'trimmed': 'trimmed'}


def _save(fig, path):
    tmp = '%s.tmp-%d.png' % (path[:-4], os.getpid())
    fig.savefig(tmp, dpi=80, bbox_inches='tight')
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _pct(x):
    return 100.0 * x


def plot_aofp(run_name, run, path):
    """Top-1 against FLOPs removed, one point per iteration, tuned and finetuned."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for phase, style in (('tuned', 'o--'), ('finetuned', 's-')):
        points = [(it['iteration'], it[phase]) for it in run['iterations'] if phase in it]
        if not points:
            continue
        xs = [_pct(e['flops_removed']) for _, e in points]
        ys = [_pct(e['top1']) for _, e in points]
        ax.plot(xs, ys, style, label=_PHASE_LABELS[phase])
        for (k, _), x, y in zip(points, xs, ys):
            ax.annotate('itr %d' % k, (x, y), textcoords='offset points', xytext=(4, 4),
                        fontsize=8)
    ax.set_title('AOFP on %s (%s): top-1 against FLOPs removed' % (run['model'], run_name))
    ax.set_xlabel('FLOPs removed against the base weights (%)')
    ax.set_ylabel('top-1 accuracy on the test split (%)')
    ax.grid(alpha=0.3)
    ax.legend(loc='best')
    return _save(fig, path)


def _final(run, phase):
    """The last iteration's entry for `phase`, or None."""
    entries = [it[phase] for it in run['iterations'] if phase in it]
    return entries[-1] if entries else None


def plot_csgd_vs_magnitude(csgd_name, csgd, magnitude_name, magnitude, path):
    """Bars of top-1: the start, magnitude pruning before/after finetuning, C-SGD before/after
    trimming, all at the same final structure."""
    bars = []
    start = csgd['iterations'][0].get('start')
    if start:
        bars.append(('base', start, '0.6'))
    for label, entry, colour in (
            ('magnitude\nafter pruning', _final(magnitude, 'pruned'), 'tab:orange'),
            ('magnitude\nafter finetuning', _final(magnitude, 'finetuned'), 'tab:red'),
            ('C-SGD\nbefore trimming', _final(csgd, 'trained'), 'tab:cyan'),
            ('C-SGD\nafter trimming', _final(csgd, 'trimmed'), 'tab:blue')):
        if entry:
            bars.append((label, entry, colour))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = range(len(bars))
    heights = [_pct(e['top1']) for _, e, _ in bars]
    ax.bar(xs, heights, color=[c for _, _, c in bars])
    for x, h in zip(xs, heights):
        ax.annotate('%.2f%%' % h, (x, h), ha='center', textcoords='offset points', xytext=(0, 3),
                    fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([label for label, _, _ in bars], fontsize=8)
    removed = _final(csgd, 'trimmed')
    ax.set_title('C-SGD (%s) vs magnitude pruning (%s) on %s\nsame structure: %.1f%% of FLOPs '
                 'removed' % (csgd_name, magnitude_name, csgd['model'],
                              _pct(removed['flops_removed'])))
    ax.set_ylabel('top-1 accuracy on the test split (%)')
    ax.set_xlabel('model (evaluation)')
    ax.set_ylim(0, max(heights + [1]) * 1.15)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, _, c in bars]
    names = ['%s: %s' % (label.replace('\n', ' '), os.path.basename(e['file']))
             for label, e, _ in bars]
    ax.legend(handles, names, fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis='y', alpha=0.3)
    return _save(fig, path)


_PRUNED_PHASES = ('pruned', 'trimmed')


def plot_widths(run_name, run, path):
    """Filters per conv layer: the base and every pruned model of the run."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    base = run['base']['widths']
    layers = range(len(base))
    ax.plot(layers, base, 'k.-', label='base (%s)' % os.path.basename(run['base']['file']))
    values = list(base)
    for it in run['iterations']:
        for phase in _PRUNED_PHASES:
            if phase in it:
                e = it[phase]
                ax.plot(layers, e['widths'], '.-', label='itr %d %s, %.1f%% FLOPs removed'
                        % (it['iteration'], phase, _pct(e['flops_removed'])))
                values += e['widths']
    if max(values) / max(min(values), 1) > 20:
        ax.set_yscale('log')
    ax.set_title('Widths per layer: %s base and pruned (%s, %s)'
                 % (run['model'], run['method'], run_name))
    ax.set_xlabel('conv layer (index in the widths vector)')
    ax.set_ylabel('filters (output channels)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_cluster_difference(run_name, run, path):
    """C-SGD's largest |member - survivor| within clusters over the training steps, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for it in run['iterations']:
        e = it.get('trained')
        if not e or not e.get('cluster_difference'):
            continue
        ys = [max(v, 1e-12) for v in e['cluster_difference']]
        ax.plot(e['cluster_difference_steps'], ys, '.-',
                label='itr %d, to %.1f%% FLOPs removed\n(at the end, BN moving statistics '
                'included: %.2g)' % (it['iteration'], _pct(it['trimmed']['flops_removed'])
                                     if 'trimmed' in it else 0.0, e['max_cluster_difference']))
    ax.set_yscale('log')
    ax.set_title('C-SGD on %s (%s): largest difference within clusters' % (run['model'], run_name))
    ax.set_xlabel('training step of the iteration (batches)')
    ax.set_ylabel('max |member - survivor| of kernels, BN γ/β\n(weight units, log scale)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8, loc='best')
    return _save(fig, path)


def latency_points(run):
    """One row per model measured in the run (phases at widths measured before are left out):
    iteration, phase, FLOPs removed, the latency figures and speed-ups per runtime."""
    rows = []
    for it in run['iterations']:
        for phase, entry in it.items():
            latency = entry.get('latency') if isinstance(entry, dict) else None
            if not latency or latency.get('same_widths_as'):
                continue
            row = dict(iteration=it['iteration'], phase=phase, file=entry['file'],
                       flops_removed=entry['flops_removed'], widths=entry['widths'],
                       throughput_batch=latency.get('throughput_batch'),
                       machine=latency.get('machine'), model=latency['model'],
                       base=latency.get('base'), speedup=latency.get('speedup', {}))
            if entry.get('latency_target'):
                row['latency_target'] = entry['latency_target']
            rows.append(row)
    return sorted(rows, key=lambda r: r['flops_removed'])


def latency_lines(run_name, rows):
    """The text of the latency numbers, one line per measured model."""
    lines = ['%s: measured speed-up against the base (batch 1 median; throughput at batch %s)'
             % (run_name, rows[0]['throughput_batch'])]
    for r in rows:
        parts = ['%s x%.2f / x%.2f' % (runtime, s['batch1'], s['throughput'])
                 for runtime, s in sorted(r['speedup'].items())]
        lines.append('  itr %d %-9s %5.1f%% FLOPs removed: %s' % (
            r['iteration'], r['phase'], _pct(r['flops_removed']), ', '.join(parts) or
            'no base measured'))
        target = r.get('latency_target')
        if target:
            line = ('    latency target %.3f ms: predicted %.3f ms, measured %.3f ms (%+.1f%%)'
                    % (target['target_ms'], target['predicted_ms'], target['measured_ms'],
                       100 * (target['predicted_ms'] / target['measured_ms'] - 1)))
            if target.get('rescaled_prediction_ms'):
                line += '; rescaled to the load at the measurement %.3f ms (%+.1f%%)' % (
                    target['rescaled_prediction_ms'],
                    100 * (target['rescaled_prediction_ms'] / target['measured_ms'] - 1))
            lines.append(line)
    return lines


def plot_speedup(run_name, run, rows, path):
    """Measured speed-up (batch 1 and throughput, per runtime) against FLOPs removed, with the
    FLOPs ratio 1 / (1 - removed) for reference."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [_pct(r['flops_removed']) for r in rows]
    runtimes = sorted({rt for r in rows for rt in r['speedup']})
    for runtime in runtimes:
        for kind, style in (('batch1', 'o-'), ('throughput', 's--')):
            points = [(0.0, 1.0)] + [(x, r['speedup'][runtime][kind]) for x, r in zip(xs, rows)
                                     if runtime in r['speedup']]
            ax.plot([p[0] for p in points], [p[1] for p in points], style,
                    label='%s, %s' % (runtime, 'batch 1 latency' if kind == 'batch1' else
                                      'throughput, batch %s' % rows[0]['throughput_batch']))
    grid = [x / 2.0 for x in range(0, int(2 * max(xs + [1])) + 1)]
    ax.plot(grid, [1 / max(1 - g / 100.0, 1e-3) for g in grid], 'k:', label='FLOPs ratio')
    machine = rows[0].get('machine') or {}
    ax.set_title('%s on %s (%s): measured speed-up\n%s, %s cores' % (
        run['method'], run['model'], run_name, machine.get('cpu', '?'),
        machine.get('cpu_count', '?')))
    ax.set_xlabel('FLOPs removed against the base (%)')
    ax.set_ylabel('speed-up over the base (x)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper left')
    return _save(fig, path)


def make_report(directory='.', log=print):
    """Draw every plot results.json allows into `directory`; returns the files written."""
    document = read_results(directory)
    runs = document['runs']
    written = []

    def out(name):
        return os.path.join(directory, 'report_%s.png' % name)

    for name, run in sorted(runs.items()):
        if run['method'] == 'aofp':
            written.append(plot_aofp(name, run, out('%s_top1_vs_flops' % name)))
        if run['method'] == 'csgd' and any('trained' in it for it in run['iterations']):
            written.append(plot_cluster_difference(name, run, out('%s_cluster_difference'
                                                                   % name)))
        if any(p in it for it in run['iterations'] for p in _PRUNED_PHASES):
            written.append(plot_widths(name, run, out('%s_widths' % name)))
        rows = latency_points(run)
        if rows:
            written.append(plot_speedup(name, run, rows, out('%s_speedup_vs_flops' % name)))
            numbers = os.path.join(directory, 'report_%s_latency.json' % name)
            write_json(numbers, dict(run=name, model=run['model'], method=run['method'],
                                     measurements=rows))
            written.append(numbers)
            for line in latency_lines(name, rows):
                log(line)
    for cname, csgd in sorted(runs.items()):
        if csgd['method'] != 'csgd':
            continue
        for mname, magnitude in sorted(runs.items()):
            if magnitude['method'] != 'magnitude' or magnitude['model'] != csgd['model']:
                continue
            c, m = _final(csgd, 'trimmed'), _final(magnitude, 'pruned')
            if c and m and c['widths'] == m['widths']:
                written.append(plot_csgd_vs_magnitude(cname, csgd, mname, magnitude,
                                                      out('%s_vs_%s' % (cname, mname))))
            elif c and m:
                log('%s and %s end at different widths; no comparison plot' % (cname, mname))
    if not written:
        raise UserError('%s lists no finished stage to plot yet' % os.path.join(directory, RESULTS))
    for path in written:
        log('wrote %s' % path)
    return written
