"""run.json is untrusted input (working directories are shared and copied): `check_record` refuses
a record that is not the stage runner's own (not JSON of the right shape) and one naming a file or
directory the runner would delete or write (outputs, planned outputs, work directories) outside the
working directory; `check_inside` is that rule for one path. Inputs (`--init_hdf5`,
`--base_weights`) may live anywhere: they are only read and hashed. `check_results` does the same
for results.json, which `report` reads (its run names become file names)."""

import os
import re

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.network import description


class Malformed(ValueError):
    """What is wrong with a record, for the UserError naming the file."""


def outside_reason(path, root):
    """Why `path` (relative to `root`) is not inside `root`, or None if it is."""
    if not isinstance(path, str) or not path:
        return 'it is not a file name'
    if os.path.isabs(path):
        return 'it is an absolute path'
    if '..' in path.replace('\\', '/').split('/'):
        return 'it goes up with ..'
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, path))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return 'a symbolic link leads it to %s' % real
    if real == real_root:
        return 'it is the working directory itself'
    return None


def check_inside(path, root, what):
    """A UserError unless `path` resolves inside the working directory `root`."""
    reason = outside_reason(path, root)
    if reason:
        raise UserError('%s %r is not inside the working directory %s (%s); every file a run '
                        'writes or removes is inside it. Nothing was changed'
                        % (what, path, os.path.abspath(root), reason))


def safe_name(name):
    """True for one path component of letters, digits, _, - and . (not . or ..)."""
    return bool(re.match(r'^[A-Za-z0-9_.-]+$', name)) and name not in ('.', '..')


def _expect(value, kind, where):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed('%s is %s, not %s' % (where, type(value).__name__,
                                              getattr(kind, '__name__', 'a number')))
    return value


def _strings(values, where):
    for value in _expect(values, list, where):
        _expect(value, str, where + ' entry')


def _mapping(values, kind, where):
    for key, value in _expect(values, dict, where).items():
        _expect(value, kind, '%s[%r]' % (where, key))


_RESULT_FIELDS = (('run', str), ('method', str), ('model', str), ('base', dict),
                  ('iteration', int), ('phase', str), ('evaluation', dict))


def _check_results(result, where):
    _expect(result, dict, where)
    for field, kind in _RESULT_FIELDS:
        if field not in result:
            raise Malformed('%s has no %s' % (where, field))
        _expect(result[field], kind, '%s.%s' % (where, field))
    if result['iteration'] < 0:
        raise Malformed('%s.iteration is negative' % where)


def _check_entry(name, entry):
    where = 'stage %s' % name
    _expect(entry, dict, where)
    for field in ('settings', 'status'):
        if field not in entry:
            raise Malformed('%s has no %s' % (where, field))
    _expect(entry['settings'], dict, where + ' settings')
    _expect(entry['status'], str, where + ' status')
    _mapping(entry.get('outputs', {}), str, where + ' outputs')
    _mapping(entry.get('inputs', {}), str, where + ' inputs')
    _strings(entry.get('planned_outputs', []), where + ' planned_outputs')
    _strings(entry.get('work_dirs', []), where + ' work_dirs')
    if entry.get('logs_at_start') is not None:
        _mapping(entry['logs_at_start'], int, where + ' logs_at_start')
    if entry.get('wall_s') is not None:
        _expect(entry['wall_s'], (int, float), where + ' wall_s')
    if entry.get('results') is not None:
        _check_results(entry['results'], where + ' results')


def check_shape(record):
    """Malformed unless `record` has the shape the stage runner writes."""
    _expect(record, dict, 'the record')
    _expect(record.get('commands'), list, 'commands')
    for name, entry in _expect(record.get('stages'), dict, 'stages').items():
        _check_entry(name, entry)
    for key, network in _expect(record.get('networks', {}), dict, 'networks').items():
        try:
            description.check_description(network, 'networks[%r]' % key)
        except UserError as e:
            raise Malformed(str(e).split('; a network description')[0])
        if description.digest(network) != key:
            raise Malformed('networks[%r] is not the description of that digest' % key)


def written_paths(record):
    """(stage, what, path) of every path the record would have the runner delete or write."""
    for name, entry in record['stages'].items():
        for path in entry.get('outputs', {}):
            yield name, 'output', path
        for path in entry.get('planned_outputs', []):
            yield name, 'planned output', path
        for path in entry.get('work_dirs', []):
            yield name, 'work directory', path


def check_record(record, record_path):
    """A UserError naming `record_path` unless the record is well-formed and confined to its
    directory."""
    root = os.path.dirname(os.path.abspath(record_path))
    try:
        check_shape(record)
    except Malformed as e:
        raise UserError('%s is not a run record of this project (%s); move it away (its stages '
                        'then run again from the start) or run in a fresh directory. Nothing was '
                        'changed'
                        % (os.path.abspath(record_path), e))
    for stage, what, path in written_paths(record):
        reason = outside_reason(path, root)
        if reason:
            raise UserError('%s names %r as the %s of stage %s, which is not inside its working '
                            'directory %s (%s); a run record names only files of its own '
                            'directory, so this one was edited or comes from elsewhere. Nothing '
                            'was changed; move %s away, or run in a fresh directory'
                            % (os.path.abspath(record_path), path, what, stage, root, reason,
                               os.path.basename(record_path)))


_NUMBER = (int, float)


def _check_phase(where, entry):
    for field, kind in (('file', str), ('flops_removed', _NUMBER), ('top1', _NUMBER)):
        if field not in entry:
            raise Malformed('%s has no %s' % (where, field))
        _expect(entry[field], kind, '%s.%s' % (where, field))
    for width in _expect(entry.get('widths'), list, where + '.widths'):
        _expect(width, _NUMBER, where + '.widths entry')
    for field in ('cluster_difference', 'cluster_difference_steps'):
        for value in _expect(entry.get(field, []), list, '%s.%s' % (where, field)):
            _expect(value, _NUMBER, '%s.%s entry' % (where, field))
    if entry.get('cluster_difference'):
        _expect(entry.get('max_cluster_difference'), _NUMBER, where + '.max_cluster_difference')


def _positive(value, where):
    import math
    if not isinstance(value, _NUMBER) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= 0:
        raise Malformed('%s is %r, not a finite positive number' % (where, value))


def _check_latency(where, entry):
    """A phase's measured `latency` and AOFP's `latency_target`, which `report` draws."""
    latency = entry.get('latency')
    if latency is not None:
        _expect(latency, dict, where + '.latency')
        for part in ('model', 'base'):
            for runtime, figures in _expect(latency.get(part, {}), dict,
                                            '%s.latency.%s' % (where, part)).items():
                _expect(figures, dict, '%s.latency.%s.%s' % (where, part, runtime))
                for field in ('batch1_median_ms', 'batch1_p95_ms', 'images_per_s'):
                    _positive(figures.get(field), '%s.latency.%s.%s.%s'
                              % (where, part, runtime, field))
        for runtime, speedup in _expect(latency.get('speedup', {}), dict,
                                        where + '.latency.speedup').items():
            _expect(speedup, dict, '%s.latency.speedup.%s' % (where, runtime))
            for field in ('batch1', 'throughput'):
                _positive(speedup.get(field), '%s.latency.speedup.%s.%s' % (where, runtime, field))
    target = entry.get('latency_target')
    if target is not None:
        _expect(target, dict, where + '.latency_target')
        for field in ('target_ms', 'predicted_ms', 'measured_ms'):
            _positive(target.get(field), '%s.latency_target.%s' % (where, field))


def _check_run(name, run):
    where = 'run %r' % name
    if not safe_name(name):
        raise Malformed('%s: a run name is part of the report\'s file names, so it may hold only '
                        'letters, digits, _, - and .' % where)
    _expect(run, dict, where)
    for field in ('method', 'model'):
        _expect(run.get(field), str, '%s.%s' % (where, field))
    base = _expect(run.get('base'), dict, where + '.base')
    _expect(base.get('file'), str, where + '.base.file')
    for width in _expect(base.get('widths'), list, where + '.base.widths'):
        _expect(width, _NUMBER, where + '.base.widths entry')
    iterations = _expect(run.get('iterations'), list, where + '.iterations')
    if not iterations:
        raise Malformed('%s has no iterations' % where)
    for k, iteration in enumerate(iterations):
        _expect(iteration, dict, '%s iteration %d' % (where, k))
        _expect(iteration.get('iteration'), int, '%s iteration %d number' % (where, k))
        for phase, entry in iteration.items():
            if isinstance(entry, dict):
                _check_phase('%s iteration %d %s' % (where, k, phase), entry)
                _check_latency('%s iteration %d %s' % (where, k, phase), entry)


def check_results(document):
    """Malformed unless `document` has the shape of a results.json that `report` can draw."""
    _expect(document, dict, 'the document')
    for name, run in _expect(document.get('runs'), dict, 'runs').items():
        _check_run(name, run)
