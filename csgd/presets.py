"""C-SGD hyperparameters: `paper` is exactly the original's (plus our base-training recipe, which the
original did not ship); `smoke` makes train, magnitude1 and csgd1 each finish in minutes on 2 CPU
cores on the synthetic data set, with a centripetal strength large enough that clusters collapse."""

import dataclasses
from typing import Tuple

from tf_benchmarks.models.densenet_model import DC40_ORIGIN_DEPS


@dataclasses.dataclass
class CsgdSettings:
    # base training (`train`, new): DenseNet paper recipe, 300 epochs, LR 0.1 /10 at 50% and 75%
    deps: Tuple[int, ...] = DC40_ORIGIN_DEPS
    train_epochs: float = 300
    train_lr_values: Tuple[float, ...] = (0.1, 0.01, 0.001)
    train_lr_epoch_fractions: Tuple[float, ...] = (0.5, 0.75)
    # magnitude1 finetuning and csgd1 training: 600 epochs, 3e-3 -> 3e-6 at epochs 200/400/500
    batch_size: int = 64
    max_epochs: float = 600
    lr_values: Tuple[float, ...] = (3e-3, 3e-4, 3e-5, 3e-6)
    lr_epoch_fractions: Tuple[float, ...] = (1 / 3, 2 / 3, 5 / 6)
    weight_decay: float = 1e-4
    centri_strength: float = 3e-3
    target_deps: str = '3-3-3'
    cluster_method: str = 'kmeans'
    kmeans_n_init: int = 10
    kmeans_seed: int = 0
    magnitude_variant: str = 'original'
    snapshot_steps: int = 20000
    # bookkeeping
    display_every: int = 100
    checkpoint_every: int = 2000
    eval_batch_size: int = 500
    eval_command_batch_size: int = 250
    precision: str = 'fp32'


HALF_WIDTH_DC40 = tuple([8] + [6] * 12 + [80] + [6] * 12 + [152] + [6] * 12)

PRESETS = {
    'paper': CsgdSettings(),
    'smoke': CsgdSettings(
        deps=HALF_WIDTH_DC40, train_epochs=6, train_lr_values=(0.1, 0.01, 0.001),
        max_epochs=4, lr_values=(0.01, 0.001, 1e-4, 1e-5), lr_epoch_fractions=(0.6, 0.85, 0.95),
        centri_strength=10.0,
        snapshot_steps=0, display_every=20, checkpoint_every=200),
}
