"""Model registry: every model is a function of its widths (`deps`, one integer per conv layer)."""

import dataclasses
from typing import Callable, Optional, Tuple

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.models import densenet_model, resnet50_model, resnet_model, vc_model
from tf_benchmarks.network.builder import NetworkBuilder

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
