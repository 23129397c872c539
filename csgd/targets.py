"""C-SGD's `--target_deps` in each model's own format -> the widths after every iteration.

`dc40`: `a-b-c`, the incremental layers' widths per stage (conv0 and the transitions keep theirs).
Other models: a fraction of the original widths applied to the target layers (`5/8` or `0.625`,
rounded down as `d * 5 // 8`, the authors' CIFAR rounding; `up:0.6` rounds up, as the authors'
ImageNet code does), or an explicit comma-separated vector of all widths. The target layers are
every layer by default (`sres50`: its 32 internal layers), or `--target_layers`; a channel group
follows its first layer. Several `a-b-c` or fraction targets, comma-separated, are an iterative
schedule (`13/16,11/16,5/8`): each iteration starts from the previous one's trimmed model, and
every fraction is of the original widths.
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
    """(Fraction, rounds up) of `0.7`, `5/8`, `down:0.7` or `up:0.6`."""
    text, up = text.strip(), False
    for prefix, value in (('up:', True), ('down:', False)):
        if text.startswith(prefix):
            text, up = text[len(prefix):], value
    try:
        f = fractions.Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise UserError('--target_deps takes fractions of the widths like 5/8 or 0.625, a list of '
                        'them, or every width, comma-separated; got %r' % (text,))
    if not 0 < f <= 1:
        raise UserError('--target_deps fractions are in (0, 1], got %s' % text)
    return f, up


def _scaled(width, fraction, up):
    scaled = width * fraction.numerator
    whole = scaled // fraction.denominator
    return max(1, whole + (1 if up and scaled % fraction.denominator else 0))


def rounded_width(target, width, min_width=1, round_to=1):
    """A fraction's target for a layer of `width` filters with --min_width and --round_to: rounded
    up to a multiple of round_to, at least min_width rounded up likewise, never wider than the
    layer (1, 1: as given)."""
    floor = -(-min_width // round_to) * round_to
    return min(width, max(-(-target // round_to) * round_to, floor))


def target_layers(model, layers=None):
    """The layers a fraction shrinks: `layers` (each the first layer of its channel group; the
    group follows it), else the model's default (every layer; sres50: its internal layers)."""
    n = len(model.default_deps)
    layers = model.default_target_layers if layers is None else layers
    if layers is None:
        return list(range(n))
    roots = {member: g.root for g in model.groups for member in g.members}
    chosen = set()
    for layer in sorted(set(int(l) for l in layers)):
        if not 0 <= layer < n:
            raise UserError('--target_layers: %s has conv layers 0..%d, got %d'
                            % (model.name, n - 1, layer))
        if roots[layer] != layer:
            raise UserError('--target_layers: layer %d is tied to layer %d (their outputs are '
                            'added); name the group by its first layer, %d'
                            % (layer, roots[layer], roots[layer]))
        chosen.update(g.members for g in model.groups if g.root == layer)
    return sorted(m for members in chosen for m in members)


def parse_target_deps(model, origin, spec, layers=None, min_width=1, round_to=1):
    """[target widths of iteration 0, 1, ...] for `model` starting at widths `origin`; fractions
    shrink the target layers (see target_layers) of the original widths, each rounded by
    rounded_width (--min_width, --round_to); a-b-c and explicit widths are taken as given."""
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
        targets, shrunk = [], set(target_layers(model, layers))
        for item in items:
            f, up = _fraction(item)
            targets.append(tuple(rounded_width(_scaled(d, f, up), d, min_width, round_to)
                                 if i in shrunk else d for i, d in enumerate(origin)))
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
