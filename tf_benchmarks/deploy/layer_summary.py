"""`summary`: a per-layer table of a weights file (layer, kind, widths in and out, FLOPs, parameters,
and the share of each removed against a base), with totals equal to `flops.py`'s counts, and the
top-1s the working directory recorded for the file and its base (evaluations, checked exports), as
text or JSON."""

import json

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.network import flops
from tf_benchmarks.pruning.file_model import read_model_file


def _scope(kernel_name):
    for suffix in ('/conv2d/kernel', '/dense/kernel', '/kernel'):
        if kernel_name.endswith(suffix):
            return kernel_name[:-len(suffix)]
    return kernel_name


def _size(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def layer_rows(model, deps, image_size=None, num_classes=None):
    """One row per conv layer (with the BN right after it), per depthwise conv, per BN standing
    alone (DenseNet's pre-activation ones, those after a depthwise conv) and per FC layer, in the order the model creates them. FLOPs follow
    `flops.count_flops` (the classifier with `flops_num_classes` outputs), parameters
    `flops.count_params`, so the rows add up to both."""
    shape = (image_size, image_size, 3) if image_size else None
    trace = model.trace(deps, num_classes, image_shape=shape)
    macs_trace = model.trace(deps, num_classes=model.flops_num_classes, image_shape=shape)
    variables = trace.variables
    order = {name: i for i, name in enumerate(variables)}
    rows = []
    attached = {conv.bn for conv in trace.convs if conv.bn}
    for conv, conv_macs in zip(trace.convs, macs_trace.convs):
        k_h, k_w = conv.kernel_size
        kind = 'conv%dx%d' % (k_h, k_w) + ('/%d' % conv.strides[0] if conv.strides[0] > 1 else '')
        params = _size(variables[conv.kernel].shape) + (conv.out_channels if conv.bias else 0)
        if conv.bn:
            kind += '+bn'
            params += 2 * conv.out_channels  # gamma, beta
        rows.append(dict(layer='conv%d' % conv.index, name=_scope(conv.kernel), kind=kind,
                         width_in=conv.in_channels, width_out=conv.out_channels,
                         flops=conv_macs.macs, params=params, _at=order[conv.kernel]))
    for dw, dw_macs in zip(trace.depthwise, macs_trace.depthwise):
        k_h, k_w = dw.kernel_size
        rows.append(dict(layer='dw%d' % dw.index, name=dw.kernel.rsplit('/', 1)[0],
                         kind='dw%dx%d' % (k_h, k_w) + ('/%d' % dw.strides[0]
                                                       if dw.strides[0] > 1 else ''),
                         width_in=dw.channels, width_out=dw.channels, flops=dw_macs.macs,
                         params=_size(variables[dw.kernel].shape) + (dw.channels if dw.bias
                                                                     else 0),
                         _at=order[dw.kernel]))
    for bn in trace.bns:
        if bn.scope not in attached:
            rows.append(dict(layer='bn%d' % bn.index, name=bn.scope, kind='bn',
                             width_in=bn.channels, width_out=bn.channels, flops=0,
                             params=2 * bn.channels, _at=order[bn.scope + '/gamma']))
    for fc, fc_macs in zip(trace.affines, macs_trace.affines):
        params = _size(variables[fc.kernel].shape) + (_size(variables[fc.bias].shape)
                                                      if fc.bias else 0)
        rows.append(dict(layer='fc%d' % fc.index, name=_scope(fc.kernel), kind='fc',
                         width_in=fc.in_features, width_out=fc.out_features, flops=fc_macs.macs,
                         params=params, _at=order[fc.kernel]))
    rows.sort(key=lambda r: r['_at'])
    for row in rows:
        del row['_at']
    return rows


# (the count as built, the other count) of models counted two ways
_CONVENTION_NOTES = {
    'resnet_paper': ('torchvision\'s convention, the stride on the 3x3',
                     'the ResNet paper\'s (the stride on the first 1x1)'),
    'projection_2x2': ('the stride-2 projections as 1x1 convs',
                       'the authors\' script\'s (projection_2x2: the projections as 2x2 convs)')}


def _removed(value, base):
    return None if not base else 1.0 - value / float(base)


def summarize(model, deps, base_deps=None, path=None, base_path=None, image_size=None,
              num_classes=None):
    """The summary as a dict: every row with `flops_removed` and `params_removed` against
    `base_deps` (default: the model's original widths), and the totals; at `image_size` (default:
    the model's) with `num_classes` logits (default: the model's)."""
    base_deps = tuple(model.default_deps if base_deps is None else base_deps)
    rows = layer_rows(model, deps, image_size, num_classes)
    base_rows = layer_rows(model, base_deps, image_size, num_classes)
    for row, base in zip(rows, base_rows):
        row['flops_removed'] = _removed(row['flops'], base['flops'])
        row['params_removed'] = _removed(row['params'], base['params'])
    total = dict(flops=sum(r['flops'] for r in rows), params=sum(r['params'] for r in rows),
                 base_flops=sum(r['flops'] for r in base_rows),
                 base_params=sum(r['params'] for r in base_rows))
    total['flops_removed'] = _removed(total['flops'], total['base_flops'])
    total['params_removed'] = _removed(total['params'], total['base_params'])
    notes = []
    other = flops.alternative(model)
    if other:
        count = flops.count_flops(model, deps, other, image_size)
        total['flops_' + other] = count
        total['flops_removed_' + other] = flops.flops_pruned_ratio(model, deps, base_deps, other,
                                                                   image_size)
        built, counted = _CONVENTION_NOTES[other]
        notes.append('FLOPs as built ({}); under {}: {:,}, {:.1f}% removed'.format(
            built, counted, count, 100 * total['flops_removed_' + other]))
    if image_size and image_size != model.image_size:
        notes.append('at %dx%d images (the file\'s input), not %dx%d'
                     % (image_size, image_size, model.image_size, model.image_size))
    if model.flops_num_classes != model.num_classes:
        notes.append('the classifier\'s FLOPs count %d of its %d outputs, as flops.py (the original '
                     'convention)' % (model.flops_num_classes, model.num_classes))
    return dict(file=path, model=model.name, widths=list(deps),
                base=dict(file=base_path, widths=list(base_deps)), layers=rows, total=total,
                notes=notes)


def summarize_file(path, base_path=None, model_name=None):
    """summarize() of a weights file (a tuned file at its masked widths) against `base_path`'s
    widths, or the model's original widths."""
    mf = read_model_file(path, model_name)
    base_deps = None
    if base_path:
        base = read_model_file(base_path, model_name)
        if base.model.name != mf.model.name:
            raise UserError('--base %s holds a %s, but %s holds a %s; compare files of one model'
                            % (base_path, base.model.name, path, mf.model.name))
        base_deps = base.deps
    from tf_benchmarks.deploy import recorded_accuracy
    accuracy = dict(file=recorded_accuracy.recorded(path),
                    base=recorded_accuracy.recorded(base_path) if base_path else None)
    return dict(summarize(mf.model, mf.deps, base_deps, path, base_path,
                          mf.input_spec.image_size, mf.num_classes), masked=mf.masked,
                accuracy=accuracy)


def _percent(share):
    return '' if share is None else '%.1f%%' % (100 * share)


def format_table(summary):
    """The summary as a text table with a header line and a total line."""
    base = summary['base']
    head = ['%s: %s, widths %s%s' % (summary['file'], summary['model'], summary['widths'],
                                     ' (masked filters removed)' if summary.get('masked') else ''),
            'removed against %s, widths %s' % (base['file'] or 'the original %s' % summary['model'],
                                               base['widths'])]
    columns = ('layer', 'name', 'kind', 'in', 'out', 'FLOPs', 'params', 'FLOPs rm', 'params rm')
    lines = [[r['layer'], r['name'], r['kind'], str(r['width_in']), str(r['width_out']),
              '{:,}'.format(r['flops']), '{:,}'.format(r['params']),
              _percent(r['flops_removed']), _percent(r['params_removed'])]
             for r in summary['layers']]
    t = summary['total']
    lines.append(['total', '', '', '', '', '{:,}'.format(t['flops']), '{:,}'.format(t['params']),
                  _percent(t['flops_removed']), _percent(t['params_removed'])])
    widths = [max(len(c), *(len(l[i]) for l in lines)) for i, c in enumerate(columns)]
    left = 3  # layer, name, kind are left-aligned; numbers right-aligned

    def fmt(cells):
        return '  '.join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    rule = '-' * len(fmt(columns))
    accuracy = []
    if summary.get('accuracy'):
        from tf_benchmarks.deploy import recorded_accuracy
        accuracy = recorded_accuracy.format_lines(base['file'], summary['accuracy']['base'],
                                                  summary['file'], summary['accuracy']['file'])
    return '\n'.join(head + [fmt(columns), rule] + [fmt(l) for l in lines[:-1]] +
                     [rule, fmt(lines[-1])] + ['note: ' + n for n in summary['notes']] +
                     accuracy) + '\n'


def format_json(summary):
    return json.dumps(summary, indent=1) + '\n'
