"""C-SGD hyperparameters per model, PRESETS[preset][model]: `paper` is exactly the original's for
`dc40` (plus our base-training recipe, which the original did not ship), the authors' later code's
for `src56`/`src110`, and for `vc` AOFP's base recipe with dc40's C-SGD schedule; `smoke` makes
train, magnitude1 and csgd1 each finish in minutes on 2 CPU cores on the synthetic data set, with a
centripetal strength large enough that clusters collapse."""

import dataclasses
from typing import Optional, Tuple

from tf_benchmarks.commands.recipe import RecipeFields
from tf_benchmarks.models import resnet50_model as r50
from tf_benchmarks.models.densenet_model import DC40_ORIGIN_DEPS
from tf_benchmarks.models.resnet_model import origin_deps
from tf_benchmarks.models.vc_model import VGG_ORIGIN_DEPS


@dataclasses.dataclass
class CsgdSettings(RecipeFields):
    # base training (`train`, new): DenseNet paper recipe, 300 epochs, LR 0.1 /10 at 50% and 75%
    deps: Tuple[int, ...] = DC40_ORIGIN_DEPS
    train_epochs: float = 300
    train_lr_values: Tuple[float, ...] = (0.1, 0.01, 0.001)
    train_lr_epoch_fractions: Tuple[float, ...] = (0.5, 0.75)
    train_warmup_epochs: float = 0
    # magnitude1 finetuning and csgd1 training: 600 epochs, 3e-3 -> 3e-6 at epochs 200/400/500
    batch_size: int = 64
    max_epochs: float = 600
    lr_values: Tuple[float, ...] = (3e-3, 3e-4, 3e-5, 3e-6)
    lr_epoch_fractions: Tuple[float, ...] = (1 / 3, 2 / 3, 5 / 6)
    weight_decay: float = 1e-4
    centri_strength: float = 3e-3
    bn_strength_ratio: float = 1.0   # BN gamma/beta strength / centri_strength (dc40: 1, the demo's)
    target_deps: str = '3-3-3'       # see csgd/targets.py; several, comma-separated: iterations
    cluster_method: str = 'kmeans'
    kmeans_n_init: int = 10
    kmeans_seed: int = 0
    magnitude_variant: str = 'original'
    target_layers: Optional[Tuple[int, ...]] = None  # None: the model's (see csgd/targets.py)
    clustered_weight_decay: Optional[float] = None   # None: weight_decay (the originals')
    min_width: int = 1               # no target layer is shrunk below this many filters
    round_to: int = 1                # a shrunk layer's width is rounded up to a multiple of this
    snapshot_steps: int = 20000
    # bookkeeping
    display_every: int = 100
    checkpoint_every: int = 2000
    eval_batch_size: int = 500
    eval_command_batch_size: int = 250
    precision: str = 'fp32'


HALF_WIDTH_DC40 = tuple([8] + [6] * 12 + [80] + [6] * 12 + [152] + [6] * 12)
SMOKE = dict(max_epochs=4, lr_values=(0.01, 0.001, 1e-4, 1e-5),
             lr_epoch_fractions=(0.6, 0.85, 0.95), centri_strength=10.0, snapshot_steps=0,
             display_every=20, checkpoint_every=200)


def _resnet(n, paper):
    """The authors' C-SGD ResNet recipe: base LR 0.05 for 600 epochs, x0.1 at 200/400, 5 warm-up
    epochs; C-SGD LR 0.03 for 600 epochs per iteration, x0.1 at 200/400, eps 3e-3, BN at 0.1 eps,
    every width x 13/16, then x 11/16, then x 5/8."""
    common = dict(train_lr_values=(0.05, 0.005, 0.0005), train_lr_epoch_fractions=(1 / 3, 2 / 3),
                  train_warmup_epochs=5, bn_strength_ratio=0.1)
    if paper:
        return CsgdSettings(deps=origin_deps(n), train_epochs=600, lr_values=(0.03, 0.003, 0.0003),
                            lr_epoch_fractions=(1 / 3, 2 / 3), target_deps='13/16,11/16,5/8',
                            **common)
    common.update(train_warmup_epochs=0.5, bn_strength_ratio=1.0)
    return CsgdSettings(deps=tuple(d // 2 for d in origin_deps(n)), train_epochs=6,
                        target_deps='5/8', **common, **SMOKE)


def _sres50(paper):
    """Base (`train`): tf_cnn_benchmarks' ResNet-50 recipe (90 epochs at global batch 256, LR 0.1
    per 256 images scaled with --batch_size, x0.1 at 30/60/80, 5 warm-up epochs, plain momentum,
    wd 1e-4, no doubled gradients). C-SGD (the authors' do_csgd.py): 70 epochs per iteration, LR
    3e-3 per 256 images x0.1 at 30/50/60, strength 0.05, BN at 0.1 of it."""
    common = dict(train_lr_values=(0.1, 0.01, 0.001, 0.0001),
                  train_lr_epoch_fractions=(1 / 3, 2 / 3, 8 / 9), train_warmup_epochs=5,
                  lr_values=(3e-3, 3e-4, 3e-5, 3e-6), lr_epoch_fractions=(3 / 7, 5 / 7, 6 / 7),
                  nesterov=False, double_gradients=False, lr_batch=256, centri_strength=0.05,
                  bn_strength_ratio=0.1, target_deps='0.7', eval_batch_size=250,
                  eval_command_batch_size=250, clustered_weight_decay=0.0)
    if paper:
        return CsgdSettings(deps=r50.origin_deps(), train_epochs=90, batch_size=256, max_epochs=70,
                            **common)
    common.update(SMOKE, centri_strength=30.0, bn_strength_ratio=1.0, eval_batch_size=100,
                  eval_command_batch_size=100, display_every=10, lr_batch=None)
    common.update(max_epochs=20)  # 300 steps on 480 images: the clusters collapse (~2e-4)
    return CsgdSettings(deps=tuple(max(1, d // 8) for d in r50.origin_deps()), train_epochs=12,
                        batch_size=32, image_size=64, **common)


# The authors' ImageNet schedule, internal layers x 0.7 -> 0.6 -> 0.5 -> 0.4 -> 0.3, each iteration
# from the previous one's trimmed file (do_csgd.py -i k); the rounding that gives the CVPR rows
# (-36.75 / -46.24 / -55.77% of FLOPs in the ResNet paper's count).
SRES50_SCHEDULE = ('0.7', 'up:0.6', '0.5', '0.4', '0.3')


def _paper_row(iterations):
    """C-SGD-70/60/50: the first 1/2/3 iterations of the schedule (start from torchvision's
    weights with --init_hdf5; the file's input, torchvision's normalization, is kept)."""
    return dataclasses.replace(_sres50(True), target_deps=','.join(SRES50_SCHEDULE[:iterations]))


VC = dict(train_epochs=600, train_lr_values=(0.05, 0.005, 0.0005),
          train_lr_epoch_fractions=(1 / 3, 2 / 3), target_deps='5/8')

PRESETS = {
    'paper': {
        'dc40': CsgdSettings(),
        'vc': CsgdSettings(deps=VGG_ORIGIN_DEPS, bn_strength_ratio=0.1, **VC),
        'src56': _resnet(9, True),
        'src110': _resnet(18, True),
        'sres50': _sres50(True),
    },
    'smoke': {
        'dc40': CsgdSettings(deps=HALF_WIDTH_DC40, train_epochs=6, **SMOKE),
        'vc': CsgdSettings(deps=(16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128),
                           **dict(VC, train_epochs=6, train_lr_values=(0.01, 0.001, 0.0001)),
                           **SMOKE),
        'src56': _resnet(9, False),
        'src110': _resnet(18, False),
        'sres50': _sres50(False),
    },
    'c70': {'sres50': _paper_row(1)},
    'c60': {'sres50': _paper_row(2)},
    'c50': {'sres50': _paper_row(3)},
}


def user_preset(preset, model):
    """A network that is not shipped (--model net.py): the ResNet recipe of `preset` (paper or
    smoke) at the network's own DEFAULT_DEPS; a fraction in --target_deps shrinks its default
    target layers (every channel group some conv or FC layer consumes)."""
    return dataclasses.replace(_resnet(9, preset == 'paper'), deps=tuple(model.default_deps),
                               target_layers=None)
