"""AOFP hyperparameters: `paper` is exactly the original's; `smoke` scales everything down so that
`train` then `prune` (two iterations) finish in minutes on 2 CPU cores on the synthetic data set."""

import dataclasses
from typing import Tuple

from tf_benchmarks.models.vc_model import VGG_ORIGIN_DEPS


@dataclasses.dataclass
class AofpSettings:
    # base training (`train`): 600 epochs, LR 0.05 -> 0.005 -> 0.0005 at epochs 200 / 400
    deps: Tuple[int, ...] = VGG_ORIGIN_DEPS
    batch_size: int = 64
    max_epochs: float = 600
    lr_values: Tuple[float, ...] = (0.05, 0.005, 0.0005)
    lr_epoch_fractions: Tuple[float, ...] = (1 / 3, 2 / 3)  # boundaries at 200 and 400 of 600
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
    # finetuning of each pruned model: 10-epoch linear warmup, then the base schedule
    finetune_epochs: float = 600
    finetune_warmup_epochs: float = 10
    # bookkeeping
    display_every: int = 100
    eval_batch_size: int = 500
    checkpoint_every: int = 2000
    precision: str = 'fp32'


PRESETS = {
    'paper': AofpSettings(),
    'smoke': AofpSettings(
        deps=(16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128),
        max_epochs=20, lr_values=(0.01, 0.001, 0.0001), lr_epoch_fractions=(0.75, 0.9),
        train_snapshot_steps=0,
        search_lr=1e-3, search_max_epochs=12, batches_per_half=40, metric_limit=0.05,
        search_start_step=10, save_per_moves=10, search_snapshot_steps=0, remain_log_steps=50,
        itr_schedule=(0.3, 0.45),
        finetune_epochs=5, finetune_warmup_epochs=0.25,
        display_every=20, checkpoint_every=200),
}
