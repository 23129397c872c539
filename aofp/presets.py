"""AOFP hyperparameters per model: `paper` is the original's (`vc`), the authors' later PyTorch
code's (`src56`/`src110`) or, for `dc40`, the DenseNet recipe for the base and the `vc` search and
finetuning; `smoke` scales everything down so that `train` then `prune` finish in minutes on 2 CPU
cores on the synthetic data set. PRESETS[preset][model]."""

import dataclasses
from typing import Optional, Tuple

from tf_benchmarks.commands.recipe import RecipeFields
from tf_benchmarks.models import resnet50_model as r50
from tf_benchmarks.models.densenet_model import DC40_ORIGIN_DEPS, incremental_layers
from tf_benchmarks.models.resnet_model import internal_layers, origin_deps
from tf_benchmarks.models.vc_model import VGG_ORIGIN_DEPS


@dataclasses.dataclass
class AofpSettings(RecipeFields):
    # base training (`train`): 600 epochs, LR 0.05 -> 0.005 -> 0.0005 at epochs 200 / 400
    deps: Tuple[int, ...] = VGG_ORIGIN_DEPS
    batch_size: int = 64
    max_epochs: float = 600
    lr_values: Tuple[float, ...] = (0.05, 0.005, 0.0005)
    lr_epoch_fractions: Tuple[float, ...] = (1 / 3, 2 / 3)  # boundaries at 200 and 400 of 600
    warmup_epochs: float = 0
    weight_decay: float = 1e-4
    train_snapshot_steps: int = 10000
    # AOFP search while training (constant LR 1e-3, ends at the FLOPs target)
    search_lr: float = 1e-3
    search_max_epochs: float = 9999
    batches_per_half: int = 20000
    metric_limit: float = 0.01
    search_start_step: int = 2000
    save_per_moves: int = 10
    search_snapshot_steps: int = 20000
    remain_log_steps: int = 5000
    itr_schedule: Tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
    target_layers: Optional[Tuple[int, ...]] = None   # None: every layer (vc)
    # finetuning of each pruned model: 10-epoch linear warmup, then the base schedule
    finetune_epochs: float = 600
    finetune_warmup_epochs: float = 10
    finetune_cosine: bool = False    # cosine decay from lr_values[0] instead of the steps
    finetune_lr: Optional[float] = None  # first LR of finetuning (default lr_values[0])
    min_width: int = 1               # no layer is searched below this many filters
    round_to: int = 1                # every searched layer keeps a multiple of this many filters
    # bookkeeping
    display_every: int = 100
    eval_batch_size: int = 500
    checkpoint_every: int = 2000
    precision: str = 'fp32'


VC_SMOKE = AofpSettings(
    deps=(16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128),
    max_epochs=20, lr_values=(0.01, 0.001, 0.0001), lr_epoch_fractions=(0.75, 0.9),
    train_snapshot_steps=0,
    search_lr=1e-3, search_max_epochs=12, batches_per_half=40, metric_limit=0.05,
    search_start_step=10, save_per_moves=10, search_snapshot_steps=0, remain_log_steps=50,
    itr_schedule=(0.3, 0.45),
    finetune_epochs=5, finetune_warmup_epochs=0.25,
    display_every=20, checkpoint_every=200)


def _resnet(n, paper):
    """The authors' AOFP ResNet recipe: base 240 epochs at LR 0.1, x0.1 at 120/180; search at
    LR 1e-3, 1000 steps per half, limit 0.01, 500 warm-up steps, 50% of FLOPs; finetuning 600
    epochs, cosine from 0.01. Internal layers only."""
    common = dict(lr_values=(0.1, 0.01, 0.001), lr_epoch_fractions=(0.5, 0.75),
                  target_layers=tuple(internal_layers(n)), finetune_cosine=True,
                  finetune_lr=0.01, finetune_warmup_epochs=0)
    if paper:
        return AofpSettings(deps=origin_deps(n), max_epochs=240, batches_per_half=1000,
                            metric_limit=0.01, search_start_step=500, itr_schedule=(0.5,),
                            finetune_epochs=600, **common)
    return AofpSettings(deps=tuple(d // 2 for d in origin_deps(n)), max_epochs=6,
                        train_snapshot_steps=0, search_max_epochs=12, batches_per_half=20,
                        metric_limit=0.05, search_start_step=10, search_snapshot_steps=0,
                        remain_log_steps=50, itr_schedule=(0.3,), finetune_epochs=2,
                        display_every=20, checkpoint_every=200, **common)


SRES50_BASE = dict(
    # tf_cnn_benchmarks' ResNet-50 recipe for `train`: 90 epochs at global batch 256, LR 0.1 per
    # 256 images (scaled linearly with --batch_size), x0.1 at epochs 30, 60 and 80, 5 linear
    # warm-up epochs, plain momentum 0.9, wd 1e-4 on the kernels, no doubled gradients.
    batch_size=256, lr_values=(0.1, 0.01, 0.001, 0.0001), lr_epoch_fractions=(1 / 3, 2 / 3, 8 / 9),
    warmup_epochs=5, nesterov=False, double_gradients=False, lr_batch=256,
    target_layers=tuple(r50.internal_layers()), eval_batch_size=250)
SRES50_SMOKE_DEPS = tuple(max(1, d // 8) for d in r50.origin_deps())


# AOFP on ImageNet (the paper gives no recipe; the choice, in docs/imagenet.md): the authors' later
# PyTorch AOFP (do_aofp.py: search LR 1e-3, 1000 steps per half, metric limit 0.01, 500 warm-up
# steps; finetuning cosine from LR 0.01) at global batch 256 with the LRs per 256 images, the
# search bounded by 10 epochs, finetuning for tf_cnn_benchmarks' 90 epochs; the FLOPs targets in
# the ResNet paper's count, as the paper's table: AOFP-C1 -32.88%, AOFP-C2 -56.73%.
SRES50_SEARCH = dict(search_lr=1e-3, search_max_epochs=10, batches_per_half=1000,
                     metric_limit=0.01, search_start_step=500, search_snapshot_steps=20000,
                     finetune_epochs=90, finetune_cosine=True, finetune_lr=0.01,
                     finetune_warmup_epochs=0, flops_convention='resnet_paper')


def _sres50(paper, target=0.5):
    if paper:
        return AofpSettings(deps=r50.origin_deps(), max_epochs=90, train_snapshot_steps=0,
                            itr_schedule=(target,), **SRES50_BASE, **SRES50_SEARCH)
    return AofpSettings(deps=SRES50_SMOKE_DEPS, max_epochs=12, image_size=64,
                        **dict(SRES50_BASE, batch_size=32, warmup_epochs=0.5,
                               eval_batch_size=100),
                        train_snapshot_steps=0, search_max_epochs=12, batches_per_half=10,
                        metric_limit=0.05, search_start_step=5, search_snapshot_steps=0,
                        remain_log_steps=50, itr_schedule=(0.3,), finetune_epochs=1,
                        finetune_warmup_epochs=0, display_every=10, checkpoint_every=200)


DC40_BASE = dict(lr_values=(0.1, 0.01, 0.001), lr_epoch_fractions=(0.5, 0.75),
                 target_layers=tuple(incremental_layers()))

PRESETS = {
    'paper': {
        'vc': AofpSettings(),
        'dc40': AofpSettings(deps=DC40_ORIGIN_DEPS, max_epochs=300, itr_schedule=(0.5,),
                             **DC40_BASE),
        'src56': _resnet(9, True),
        'src110': _resnet(18, True),
        'sres50': _sres50(True),
    },
    'smoke': {
        'vc': VC_SMOKE,
        'dc40': dataclasses.replace(
            VC_SMOKE, deps=tuple([8] + [6] * 12 + [80] + [6] * 12 + [152] + [6] * 12),
            max_epochs=6, itr_schedule=(0.3,), finetune_epochs=2, **DC40_BASE),
        'src56': _resnet(9, False),
        'src110': _resnet(18, False),
        'sres50': _sres50(False),
    },
    'c1': {'sres50': _sres50(True, 0.3288)},
    'c2': {'sres50': _sres50(True, 0.5673)},
}


def user_preset(preset, model):
    """A network that is not shipped (--model net.py): the ResNet recipe of `preset` (paper or
    smoke) at the network's own DEFAULT_DEPS, searching its default target layers (every conv layer
    whose outputs feed a conv or FC layer, a channel group by its first layer)."""
    return dataclasses.replace(_resnet(9, preset == 'paper'), deps=tuple(model.default_deps),
                               target_layers=None)
