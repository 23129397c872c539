"""`report`: PNG plots drawn from a working directory's results.json: top-1 against FLOPs removed over
the AOFP iterations, C-SGD against magnitude pruning at the same structure, widths per layer (base
and every pruned model), and C-SGD's largest difference within clusters over the training steps."""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from tf_benchmarks.core.errors import UserError  # noqa: E402
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
