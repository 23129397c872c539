"""The top-1s a working directory has recorded for a weights file, for `summary`: its evaluations in
results.json (any run, iteration and phase) and its checked exports (SavedModel, TFLite, int8 TFLite,
ONNX) in exports.json, so a summary reads base -> pruned -> int8."""

import os

from tf_benchmarks.runs import results


def _key(path):
    return os.path.normpath(os.path.abspath(path))


def recorded(path, directory='.'):
    """{'top1': the file's evaluated top-1 or None, 'where': 'run/iteration/phase',
    'exports': [{'out', 'images', 'split', 'top1': {runtime: top-1}}]} of `path`."""
    key = _key(path)
    out = dict(top1=None, where=None, exports=[])
    if os.path.exists(os.path.join(directory, results.RESULTS)):
        document = results.read_results(directory)
        for run_name, run in sorted(document['runs'].items()):
            for iteration in run['iterations']:
                for phase, entry in iteration.items():
                    if isinstance(entry, dict) and 'top1' in entry and \
                            _key(os.path.join(directory, entry['file'])) == key:
                        out.update(top1=entry['top1'], where='%s itr %d %s'
                                   % (run_name, iteration['iteration'], phase))
    for export in sorted(results.read_exports(directory).values(), key=lambda e: e['out']):
        if _key(os.path.join(directory, export['source'])) == key:
            out['exports'].append({k: export[k] for k in ('out', 'images', 'split', 'top1')})
            if out['top1'] is None:
                out.update(top1=export['top1']['saved_model'], where='export %s' % export['out'])
    return out


def format_lines(base_path, base, path, this):
    """`top-1 recorded here: base B 60.96% -> F 62.10% -> export D: SavedModel 62.10%, ...` (one
    line per export of the file), or [] where nothing is recorded."""
    from tf_benchmarks.deploy.export import NAMES

    def top1(entry):
        return 'not recorded' if entry['top1'] is None else '%.2f%% (%s)' % (100 * entry['top1'],
                                                                              entry['where'])
    if this['top1'] is None and not this['exports'] and (base is None or base['top1'] is None):
        return []
    chain = ('base %s %s -> ' % (base_path, top1(base)) if base is not None else '') + \
        '%s %s' % (path, top1(this))
    lines = ['top-1 recorded here: ' + chain]
    for export in this['exports']:
        lines.append('  -> export %s on %d %s images: %s' % (
            export['out'], export['images'], export['split'], ', '.join(
                '%s %.2f%%' % (NAMES[k], 100 * v) for k, v in export['top1'].items())))
    return lines
