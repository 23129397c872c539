"""Model registry: every model is a function of its widths (`deps`, one integer per conv layer);
the shipped models, and models made from a network description (`from_description`)."""

import dataclasses
from typing import Callable, Optional, Tuple

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models import densenet_model, resnet50_model, resnet_model, vc_model
from tf_benchmarks.network import description as network_description
from tf_benchmarks.network.builder import NetworkBuilder
from tf_benchmarks.network.trace import SUM

MAX_WIDTH = 1 << 16  # filters of one layer; more is a typo or a damaged file


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    default_deps: Tuple[int, ...]
    num_classes: int          # logits of the network (vc keeps the original's 11)
    flops_num_classes: int    # classifier outputs counted by the original FLOPs function
    add_inference: Callable   # (builder, deps, num_classes) -> logits node
    description: str
    image_size: int = 32      # the input size the model is traced and exported at by default
    # Conv layers whose multiply-accumulates the ResNet paper's count divides by 4 (it puts a
    # stage's stride on the first 1x1 of the stage's first block, not on the 3x3): sres50's.
    v1_strided_layers: Tuple[int, ...] = ()
    # The 1x1 stride-2 projections the authors' FLOPs script counts as 2x2 convs (src56, src110).
    projection_layers: Tuple[int, ...] = ()
    # The layers pruned by default where a method prunes by fractions (None: every layer).
    default_target_layers: Optional[Tuple[int, ...]] = None
    # The network description a model made from one replays (None: a shipped model's, traced).
    network_description: Optional[dict] = dataclasses.field(default=None, compare=False,
                                                            repr=False)

    def check_deps(self, deps):
        """Return deps as a tuple of ints, or raise a UserError saying what is wrong."""
        try:
            deps = tuple(int(d) for d in deps)
        except (TypeError, ValueError, OverflowError):
            raise UserError('%s: widths must be integers, got %r' % (self.name, deps))
        if len(deps) != len(self.default_deps):
            raise UserError('%s needs %d widths (one per conv layer), got %d: this file or flag '
                            'belongs to another architecture' % (self.name, len(self.default_deps),
                                                                  len(deps)))
        if min(deps) < 1:
            raise UserError('%s: every layer needs at least one filter, got %r' % (self.name, deps))
        if max(deps) > MAX_WIDTH:
            raise UserError('%s: a layer has at most %d filters, got %r' % (self.name, MAX_WIDTH,
                                                                           deps))
        for group in self.groups:
            for member in group.members:
                if deps[member] != deps[group.root]:
                    raise UserError(
                        '%s: layer %d is tied to layer %d (their outputs are added, so they are one '
                        'channel group) and must have its width, got %d and %d'
                        % (self.name, member, group.root, deps[member], deps[group.root]))
        return deps

    def file_num_classes(self, weight_file):
        """The logits of a weight file: the length of its classifier's bias (the model's last
        variable), or the model's own count where the file has none."""
        last = next(reversed(self.trace().variables))
        value = weight_file.weights.get(last)
        return int(value.shape[0]) if value is not None and value.ndim == 1 and \
            value.shape[0] >= 1 else self.num_classes

    def file_deps(self, weight_file):
        """The widths of a weight file: its `deps`, or the default widths for a file without them
        (the originals' base files), checked as check_deps does."""
        return self.check_deps(weight_file.deps or self.default_deps)

    @property
    def groups(self):
        """The model's channel groups (the same at every widths)."""
        key = (self.name, self.add_inference, self.default_deps)  # imported models share names
        if key not in _GROUPS:
            builder = NetworkBuilder(image_shape=(self.image_size, self.image_size, 3))
            self.add_inference(builder, self.default_deps, self.num_classes)
            _GROUPS[key] = builder.trace.groups
        return _GROUPS[key]

    @property
    def builtin(self):
        """True for a shipped model (the registry's own)."""
        return MODELS.get(self.name) is self

    @property
    def network(self):
        """The model's network description (network/description.py), which weight files carry."""
        if self.network_description is not None:
            return self.network_description
        key = (self.name, self.add_inference, self.default_deps)
        if key not in _NETWORKS:
            _NETWORKS[key] = network_description.describe(
                self.add_inference, self.default_deps, self.num_classes, self.name,
                (self.image_size, self.image_size, 3))
        return _NETWORKS[key]

    @property
    def scratch_weights(self):
        """The base model file both drivers' `train` writes (the originals' pattern)."""
        return '%s_scratch_savedweights.hdf5' % self.name

    @property
    def scratch_train_dir(self):
        return '%s_scratch_train' % self.name

    def group_roots(self):
        return [g.root for g in self.groups]

    def build(self, builder, deps, num_classes=None):
        """Run the model's builder calls on `builder`; returns the logits node."""
        deps = self.check_deps(deps)
        return self.add_inference(builder, deps, num_classes or self.num_classes)

    def trace(self, deps=None, num_classes=None, image_shape=None):
        """The model's NetworkTrace (names, shapes, MACs, channel slots) without building a graph,
        at `image_shape` (default: the model's image size, RGB)."""
        builder = NetworkBuilder(image_shape=image_shape or (self.image_size, self.image_size, 3))
        self.build(builder, self.default_deps if deps is None else deps, num_classes)
        return builder.trace


_GROUPS = {}
_NETWORKS = {}

MODELS = {
    'vc': ModelSpec('vc', vc_model.VGG_ORIGIN_DEPS, 11, 10, vc_model.add_inference,
                    '13-conv VGG-16 for CIFAR-10 (AOFP)'),
    'dc40': ModelSpec('dc40', densenet_model.DC40_ORIGIN_DEPS, 10, 10,
                      densenet_model.add_inference, 'DenseNet-40, k=12 (C-SGD)'),
    'src56': ModelSpec('src56', resnet_model.origin_deps(9), 10, 10,
                       resnet_model.make_add_inference(9), 'stagewise ResNet-56 (the authors\' '
                       'later code)', projection_layers=tuple(resnet_model.pacesetters(9)[1:])),
    'src110': ModelSpec('src110', resnet_model.origin_deps(18), 10, 10,
                        resnet_model.make_add_inference(18), 'stagewise ResNet-110',
                        projection_layers=tuple(resnet_model.pacesetters(18)[1:])),
    'sres50': ModelSpec('sres50', resnet50_model.origin_deps(), 1000, 1000,
                        resnet50_model.add_inference, 'stagewise ResNet-50 for ImageNet (the '
                        'authors\' later code, torchvision\'s layout)', image_size=224,
                        v1_strided_layers=tuple(resnet50_model.strided_first_convs()),
                        default_target_layers=tuple(resnet50_model.internal_layers())),
}


def get_model(name):
    try:
        return MODELS[name]
    except KeyError:
        raise UserError('unknown model %r; known models: %s' % (name, ', '.join(sorted(MODELS))))


def feeding_roots(trace):
    """The channel groups (by root) whose channels some conv or FC layer takes in: a producer with
    a SUM slot in a conv or affine kernel. What AOFP searches by default on a model that is not
    shipped (a group no layer consumes has no next layer to score it by)."""
    kernels = {c.kernel for c in trace.convs} | {a.kernel for a in trace.affines}
    fed = {trace.root_of(layer) for layer, slots in trace.slots.items()
           if any(s.kind == SUM and s.var in kernels for s in slots)}
    return tuple(g.root for g in trace.groups if g.root in fed)


def from_description(desc, source=None, description_text=None):
    """The ModelSpec of a network description (checked first; `source` names it in errors). A
    description equal to a shipped model's is that model; another one may not take a shipped
    model's name. The model replays the description: no code of the place it came from runs."""
    source = source or 'the network description'
    desc = network_description.check_description(desc, source)
    shipped = MODELS.get(desc['name'])
    if shipped is not None:
        if shipped.network == desc:
            return shipped
        raise UserError('%s: the network is named %s, the name of a shipped model, but is another '
                        'network; give it another NAME' % (source, desc['name']))
    h, w, c = desc['image_shape']
    if h != w or c != 3:
        raise UserError('%s: image_shape %s; the input pipelines feed square RGB images, so a '
                        'network takes [S, S, 3]' % (source, desc['image_shape']))
    if h < 8:
        raise UserError('%s: image_shape %s; images are at least 8x8' % (source, desc['image_shape']))
    trace = network_description.trace_of(desc, source=source)
    for name, info in trace.variables.items():
        if min(info.shape, default=1) < 1:
            raise UserError('%s: variable %s would have the shape %s; every size must be positive'
                            % (source, name, list(info.shape)))
    if len(trace.convs) != len(desc['default_deps']) or trace.deps != desc['default_deps']:
        raise UserError('%s: it has %d conv layers with widths %s, but default_deps is %s; conv '
                        'layer i takes the width deps[i]'
                        % (source, len(trace.convs), trace.deps[:8], desc['default_deps'][:8]))
    if not trace.affines:
        raise UserError('%s: it has no FC layer; the logits are an affine layer\'s outputs'
                        % source)
    return ModelSpec(desc['name'], tuple(desc['default_deps']), desc['num_classes'],
                     desc['num_classes'], network_description.make_add_inference(desc, source),
                     description_text or 'a network from %s' % source, image_size=h,
                     default_target_layers=feeding_roots(trace), network_description=desc)
