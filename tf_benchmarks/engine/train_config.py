"""The settings of one training run (`TrainConfig`: steps, batch, LR schedule, momentum, weight
decay and which variables get it, gradient doubling, precision and fp16's loss scaling, seed,
bookkeeping intervals)."""

import dataclasses
from typing import Callable, Sequence

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.engine.loss_scale import LossScaleRule

PRECISIONS = ('fp32', 'bf16', 'bf16_activations', 'fp16')


DEFAULT_SEED = 1234     # TrainConfig.seed; --seed when not given
MAX_SEED = 2 ** 31 - 1  # --seed: 31 bits, a TF graph seed and a NumPy seed alike


def derived_seed(seed, original):
    """The seed of a random choice the originals made with their own fixed seed `original` (AOFP's
    drop RNG 4321, C-SGD's k-means 0), for the run seed `seed`: `original` itself at DEFAULT_SEED,
    and a different value for every other seed (XOR, so no two run seeds share it)."""
    return seed ^ DEFAULT_SEED ^ original


def kernels_only(name, shape):
    """The AOFP L2 filter: only rank-2 and rank-4 variables (conv and FC kernels)."""
    return len(shape) in (2, 4)


@dataclasses.dataclass
class TrainConfig:
    num_steps: int
    batch_size: int = 64
    lr_values: Sequence[float] = (0.1,)
    lr_boundaries: Sequence[int] = ()          # in steps; len(lr_values) == len(lr_boundaries) + 1
    warmup_steps: int = 0                      # linear warmup from 0 to lr_values[0]
    cosine: bool = False                       # cosine decay from lr_values[0] to 0 (no steps)
    momentum: float = 0.9
    nesterov: bool = True                      # False: plain momentum (tf_cnn_benchmarks, PyTorch)
    weight_decay: float = 1e-4
    l2_filter: Callable = kernels_only         # (name, shape) -> bool: which variables get L2
    double_gradient_keywords: Sequence[str] = ('bias', 'beta')
    augmentation: bool = True
    shuffle: bool = True
    precision: str = 'fp32'                    # 'bf16' / 'fp16': bfloat16 / float16 convolutions,
    #                                            float32 variables, BN, loss and statistics;
    #                                            'bf16_activations': bfloat16 activations too
    loss_scale: LossScaleRule = LossScaleRule()  # fp16's dynamic loss scaling (loss_scale.py)
    display_every: int = 100
    summary_every: int = 100
    checkpoint_every: int = 2000               # steps between resumable checkpoints
    checkpoint_secs: float = 600.0             # ... or seconds, whichever comes first
    snapshot_every: int = 0                    # steps between ckpt_step_<gs>.hdf5 snapshots
    seed: int = DEFAULT_SEED                   # graph seed, data order and augmentation
    intra_threads: int = 0
    inter_threads: int = 0

    def __post_init__(self):
        if len(self.lr_values) != len(self.lr_boundaries) + 1:
            raise ValueError('need one more LR value than boundaries')
        if self.precision not in PRECISIONS:
            raise UserError('precision must be one of %s, got %r'
                            % (', '.join(PRECISIONS), self.precision))


MAX_STEPS = 2 ** 31 - 1  # the steps of one run: global step, LR boundaries and step counters


def check_steps(config, num_examples, what, flag):
    """Before anything is written: `config` must train at least one step and at most MAX_STEPS,
    and its batch must fit in the `num_examples` images; else a UserError naming `flag` (the
    epochs flag that sets `what`, e.g. '--max_epochs' for 'train')."""
    if config.batch_size > num_examples:
        raise UserError('%s: the data has %d images, fewer than one batch of %d; pass a smaller '
                        '--batch_size' % (what, num_examples, config.batch_size))
    if config.num_steps < 1:
        raise UserError('%s would take 0 training steps (%s too small for batches of %d on %d '
                        'images); raise %s' % (what, flag, config.batch_size, num_examples, flag))
    if config.num_steps > MAX_STEPS:
        raise UserError('%s would take %d training steps, too many (at most %d); lower %s'
                        % (what, config.num_steps, MAX_STEPS, flag))
    return config
