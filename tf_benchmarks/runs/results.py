"""`results.json`, the machine-readable results of `prune`, `csgd1` and `magnitude1` in a working
directory: per run, iteration and phase, the file, widths, FLOPs and parameters with the share
removed, top-1, top-5, loss and wall time. Each finished stage stores its part in run.json; this file
is rebuilt from run.json whenever that changes, so re-runs, resumes and --restart_from keep the two
consistent and nothing is listed twice. `export --int8` / `--onnx` in that directory add their
checked top-1s (SavedModel, TFLite, int8 TFLite, ONNX) to exports.json beside it, which every
rebuild lists under `exports`."""

import os

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.atomic import write_json
from tf_benchmarks.network import flops
from tf_benchmarks.runs.record_check import Malformed, check_results

RESULTS = 'results.json'
EXPORTS = 'exports.json'
RECORD = 'run.json'
FORMAT = 'results-v1'


def _removed(value, base):
    return 1.0 - value / float(base) if base else None


def structure(model, widths, base_widths, image_size=None):
    """Widths, FLOPs and parameters of `widths`, with the share removed against `base_widths`;
    FLOPs at `image_size` (the run's input; default the model's)."""
    f, p = flops.count_flops(model, widths, image_size=image_size), \
        flops.count_params(model, widths)
    out = dict(widths=[int(w) for w in widths], flops=f, params=p,
               flops_removed=_removed(f, flops.count_flops(model, base_widths,
                                                           image_size=image_size)),
               params_removed=_removed(p, flops.count_params(model, base_widths)))
    out.update(other_flops(model, widths, base_widths, image_size))
    return out


def other_flops(model, widths, base_widths, image_size=None):
    """For models counted two ways (flops.alternative), `flops_<convention>` and
    `flops_removed_<convention>` of the other count; {} for the others."""
    other = flops.alternative(model)
    if other is None:
        return {}
    f = flops.count_flops(model, widths, other, image_size)
    return {'flops_' + other: f, 'flops_removed_' + other: _removed(
        f, flops.count_flops(model, base_widths, other, image_size))}


def base_entry(model, path, widths, image_size=None):
    out = dict(file=path, widths=[int(w) for w in widths],
               flops=flops.count_flops(model, widths, image_size=image_size),
               params=flops.count_params(model, widths))
    other = flops.alternative(model)
    if other:
        out['flops_' + other] = flops.count_flops(model, widths, other, image_size)
    return out


def evaluation(model, path, widths, base_widths, result, image_size=None):
    """One evaluated file: structure() plus top-1, top-5, mean loss and the number of images."""
    return dict(file=path, **structure(model, widths, base_widths, image_size),
                top1=float(result.top1),
                top5=float(result.top5), loss=float(result.loss), images=int(result.num_examples))


def stage_result(run, method, model, base, iteration, phase, entry, **extra):
    """What a finished stage stores in run.json for this file: the run (the command's mode) and
    method it belongs to, its iteration and phase, the base, and its evaluation `entry`."""
    return dict(run=run, method=method, model=model.name, base=base, iteration=int(iteration),
                phase=phase, evaluation=dict(entry, **extra))


def build(record, exports=None):
    """The results document from a run.json record: every finished stage that stored a result,
    and the checked exports of exports.json ({export directory: entry}) where there are any."""
    runs = {}
    for name, entry in record.get('stages', {}).items():
        result = entry.get('results')
        if entry.get('status') != 'done' or not result:
            continue
        run = runs.setdefault(result['run'], dict(method=result['method'], model=result['model'],
                                                  base=result['base'], iterations=[]))
        while len(run['iterations']) <= result['iteration']:
            run['iterations'].append(dict(iteration=len(run['iterations']), wall_s=0.0))
        iteration = run['iterations'][result['iteration']]
        iteration[result['phase']] = dict(result['evaluation'], stage=name,
                                          wall_s=entry.get('wall_s'))
        iteration['wall_s'] = round(iteration['wall_s'] + (entry.get('wall_s') or 0.0), 1)
    document = dict(format=FORMAT, runs=runs)
    if exports:
        document['exports'] = [exports[k] for k in sorted(exports)]
    return document


def read_exports(directory):
    """{export directory: entry} of exports.json in `directory` ({} without one)."""
    import json
    path = os.path.join(directory, EXPORTS)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            exports = json.load(f)
        if not isinstance(exports, dict) or not all(isinstance(v, dict) and isinstance(
                v.get('top1'), dict) for v in exports.values()):
            raise ValueError('not a map of exports')
    except ValueError as e:
        raise UserError('%s is not an exports record of this project (%s); move it away and run '
                        'the exports again' % (os.path.abspath(path), e))
    return exports


def record_export(directory, entry):
    """In a run directory (one with run.json), add a checked export to exports.json and rebuild
    results.json with it; returns the path of results.json, or None outside a run directory
    (export.json in the export holds the figures then)."""
    import json
    record_path = os.path.join(directory, RECORD)
    if not os.path.exists(record_path):
        return None
    exports = read_exports(directory)
    exports[entry['out']] = entry
    write_json(os.path.join(directory, EXPORTS), exports)
    with open(record_path) as f:
        record = json.load(f)
    write_json(results_path(record_path), build(record, exports))
    return results_path(record_path)


def results_path(record_path):
    """results.json beside run.json."""
    return os.path.join(os.path.dirname(record_path), RESULTS)


def rebuild(record, record_path):
    """Write results.json next to run.json from `record`, atomically; nothing is written where no
    stage stored a result and there is no results.json yet (e.g. `train` alone)."""
    path = os.path.join(os.path.dirname(os.path.abspath(record_path)), RESULTS)
    document = build(record, read_exports(os.path.dirname(os.path.abspath(record_path))))
    if (document['runs'] or os.path.exists(path)) and workers.writes_files():
        write_json(path, document)


def read_results(directory='.'):
    """The results document of a working directory; a UserError if there is none."""
    import json
    path = os.path.join(directory, RESULTS)
    if not os.path.exists(path):
        raise UserError('%s has no %s; run `report` in the working directory of a `prune`, '
                        '`csgd1` or `magnitude1` run (they write it after every stage)'
                        % (os.path.abspath(directory), RESULTS))
    try:
        with open(path) as f:
            document = json.load(f)
        if not isinstance(document, dict) or document.get('format') != FORMAT:
            raise Malformed('not a %s document' % FORMAT)
        check_results(document)
    except ValueError as e:  # Malformed is one
        raise UserError('%s is not a results file of this project (%s); move it away: the next '
                        '`prune`, `csgd1` or `magnitude1` stage that finishes here writes it anew '
                        'from run.json' % (os.path.abspath(path), e))
    return document
