"""C-SGD's `--target_deps` in each model's own format -> the widths after every iteration.

`dc40`: `a-b-c`, the incremental layers' widths per stage (conv0 and the transitions keep theirs).
Other models: a fraction of the original widths applied to every layer (`5/8` or `0.625`, as
`d * 5 // 8`, the authors' rounding), or an explicit comma-separated vector of all widths.
Several `a-b-c` or fraction targets, comma-separated, are an iterative schedule
(`13/16,11/16,5/8`): each iteration starts from the previous one's trimmed model.
"""

import fractions

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models.densenet_model import BLOCKS_PER_STAGE


def with_stage_widths(deps, spec):
    """Replace the incremental widths of each stage of a DenseNet `deps` by 'a-b-c'."""
    try:
        widths = [int(x) for x in spec.split('-')]
    except ValueError:
        widths = []
    if len(widths) != 3 or min(widths) < 1:
        raise UserError('--target_deps takes three positive widths like 3-3-3, got %r' % (spec,))
    deps = list(deps)
    for stage, width in enumerate(widths):
        first = 1 + stage * (BLOCKS_PER_STAGE + 1)
        for layer in range(first, first + BLOCKS_PER_STAGE):
            deps[layer] = width
    return tuple(deps)


def _fraction(text):
    try:
        f = fractions.Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise UserError('--target_deps takes fractions of the widths like 5/8 or 0.625, a list of '
                        'them, or every width, comma-separated; got %r' % (text,))
    if not 0 < f <= 1:
        raise UserError('--target_deps fractions are in (0, 1], got %s' % text)
    return f


def parse_target_deps(model, origin, spec):
    """[target widths of iteration 0, 1, ...] for `model` starting at widths `origin`."""
    items = [x.strip() for x in str(spec).split(',')]
    if not any(items):
        raise UserError('--target_deps is empty')
    for item in items:
        if not item or item.startswith('-'):
            raise UserError('--target_deps: %r is not a width, a fraction or a-b-c (an empty or '
                            'negative entry) in %r' % (item, spec))
    if model.name == 'dc40':
        targets = [with_stage_widths(origin, item) for item in items]
    elif len(items) == len(origin) and all(x.strip().isdigit() for x in items):
        targets = [tuple(int(x) for x in items)]
    else:
        targets = []
        for item in items:
            f = _fraction(item)
            targets.append(tuple(max(1, d * f.numerator // f.denominator) for d in origin))
    previous = tuple(origin)
    for target in targets:
        model.check_deps(target)
        wider = [i for i, (t, d) in enumerate(zip(target, previous)) if t > d]
        if wider:
            raise UserError('--target_deps %s is wider than the model (layer %d: %d filters, '
                            'asked for %d)' % (spec, wider[0], previous[wider[0]],
                                               target[wider[0]]))
        previous = target
    return targets
