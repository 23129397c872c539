"""The data model of a traced network: its layers, variables, channel slots (where every conv
layer's output channels go) and channel groups, as the builder (`network.builder`) records them;
surgery and FLOPs counting read it."""

import collections
import dataclasses
from typing import Dict, List, Optional, Tuple

# Variable roles recorded in the trace.
KERNEL, BIAS, GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE = (
    'kernel', 'bias', 'gamma', 'beta', 'moving_mean', 'moving_variance')
BN_ROLES = (GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE)

# How a slot treats the channels of one cluster at surgery time.
SELECT = 'select'  # keep the survivor's entry, drop the others (conv outputs, BN vectors, biases)
SUM = 'sum'        # add the members' entries into the survivor's, drop the others (consumer inputs)


@dataclasses.dataclass(frozen=True)
class Segment:
    """A run of `count` channels of a tensor that are output channels 0..count-1 of conv `producer`.

    `producer` is None for channels no conv layer produced (the image, FC outputs). After `flatten`,
    channel c of the segment sits at positions offset + c + p * period for p in range(repeats)
    (NHWC flatten: one copy per spatial position); before it, period is 0 and repeats is 1.
    """
    producer: Optional[int]
    count: int
    offset: int
    period: int = 0
    repeats: int = 1


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Static shape (per image, NHWC) and channel provenance of a tensor."""
    height: int
    width: int
    channels: int
    segments: Tuple[Segment, ...]


@dataclasses.dataclass(frozen=True)
class Slot:
    """One place where a producer's channel c lives: `var[..., offset + c + p*period, ...]` on `axis`."""
    var: str
    axis: int
    offset: int
    kind: str
    period: int = 0
    repeats: int = 1

    def positions(self, channel):
        return [self.offset + channel + p * self.period for p in range(self.repeats)]


@dataclasses.dataclass
class ConvLayer:
    index: int
    kernel: str
    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, int]
    out_hw: Tuple[int, int]
    macs: int
    strides: Tuple[int, int] = (1, 1)
    padding: str = 'SAME'
    activation: Optional[str] = 'relu'
    bn: Optional[str] = None  # scope of the BN that directly follows this conv, if any
    bias: Optional[str] = None  # the conv's bias variable, if it has one


@dataclasses.dataclass
class DepthwiseLayer:
    """A depthwise conv (depth multiplier 1): `channels` in and out, no producer of its own."""
    index: int
    kernel: str
    bias: Optional[str]
    channels: int
    kernel_size: Tuple[int, int]
    out_hw: Tuple[int, int]
    macs: int
    strides: Tuple[int, int] = (1, 1)
    padding: str = 'SAME'


@dataclasses.dataclass
class BatchNormLayer:
    index: int
    scope: str
    channels: int
    segments: Tuple[Segment, ...]
    epsilon: float = 1e-3


@dataclasses.dataclass
class AffineLayer:
    index: int
    kernel: str
    bias: Optional[str]
    in_features: int
    out_features: int
    macs: int
    activation: Optional[str] = 'relu'


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Conv layers whose output channels are added together, so they must lose the same channels.
    `root` is the smallest index (a ResNet stage's pacesetter); a layer no add couples is a group
    of one."""
    root: int
    members: Tuple[int, ...]


@dataclasses.dataclass
class VariableInfo:
    shape: Tuple[int, ...]
    trainable: bool
    role: str


class NetworkTrace:
    """Everything known about a network without building it: variables, layers, MACs, channel slots."""

    def __init__(self):
        self.variables: 'collections.OrderedDict[str, VariableInfo]' = collections.OrderedDict()
        self.convs: List[ConvLayer] = []
        self.bns: List[BatchNormLayer] = []
        self.affines: List[AffineLayer] = []
        self.depthwise: List[DepthwiseLayer] = []
        self.slots: Dict[int, List[Slot]] = collections.defaultdict(list)
        self._parent: Dict[int, int] = {}  # union-find over conv indices, joined by `add`

    def root_of(self, layer):
        while self._parent.get(layer, layer) != layer:
            layer = self._parent[layer]
        return layer

    def join(self, a, b):
        a, b = self.root_of(a), self.root_of(b)
        if a != b:
            self._parent[max(a, b)] = min(a, b)

    @property
    def groups(self):
        """Every conv layer's ChannelGroup, ordered by root."""
        members = collections.defaultdict(list)
        for conv in self.convs:
            members[self.root_of(conv.index)].append(conv.index)
        return [ChannelGroup(root, tuple(m)) for root, m in sorted(members.items())]

    def group_of(self, layer):
        root = self.root_of(layer)
        return ChannelGroup(root, tuple(c.index for c in self.convs
                                        if self.root_of(c.index) == root))

    def expand_to_groups(self, layer_clusters):
        """{layer: clusters} given for some members of groups -> the same clusters for every member
        of those groups. Two members given different clusters is a ValueError: tied layers always
        lose the same channels."""
        out = {}
        for layer, clusters in sorted(layer_clusters.items()):
            clusters = sorted(sorted(int(c) for c in cluster) for cluster in clusters)
            for member in self.group_of(layer).members:
                if member in out and out[member] != clusters:
                    raise ValueError('layers %d and %d are one channel group (their outputs are '
                                     'added) but were given different clusters'
                                     % (self.root_of(layer), layer))
                out[member] = clusters
        return out

    @property
    def deps(self):
        return [c.out_channels for c in self.convs]

    @property
    def shapes(self):
        """{variable name: shape}."""
        return {name: info.shape for name, info in self.variables.items()}

    @property
    def macs(self):
        return sum(c.macs for c in self.convs) + sum(a.macs for a in self.affines) + \
            sum(d.macs for d in self.depthwise)

    @property
    def num_params(self):
        return sum(_prod(v.shape) for v in self.variables.values() if v.trainable)

    def add_slots(self, segments, var, axis, kind):
        for seg in segments:
            if seg.producer is not None:
                self.slots[seg.producer].append(
                    Slot(var, axis, seg.offset, kind, seg.period, seg.repeats))


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n
