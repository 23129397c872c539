"""What both methods' presets hold beyond their own hyperparameters, and what follows from it: the
input (image size, normalization) over a start file's, the optimizer's form (Nesterov or plain
momentum, the originals' doubled bias/beta gradients or none), the rule that scales the learning
rate with the batch, the FLOPs convention and the run's seed. The originals' CIFAR recipes keep the
defaults, which add nothing to run.json, so run directories written before these fields resume
unchanged."""

import dataclasses
from typing import Optional

from tf_benchmarks.engine.periodic_eval import PeriodicEvaluation
from tf_benchmarks.engine.train_config import DEFAULT_SEED
from tf_benchmarks.network import description
from tf_benchmarks.network.input_spec import default_spec, spec_with


@dataclasses.dataclass
class RecipeFields:
    image_size: Optional[int] = None      # None: the start file's, else the model's
    normalization: Optional[str] = None   # None: the start file's, else inception (x/127.5 - 1)
    flops_convention: str = 'torchvision'
    nesterov: bool = True                 # False: plain momentum (tf_cnn_benchmarks, PyTorch)
    double_gradients: bool = True         # the originals' 2x gradients of biases (and BN betas)
    lr_batch: Optional[int] = None        # the LR values are for batches of this size and scale
                                          # linearly with --batch_size (Goyal et al.); None: as given
    eval_every: float = 0                 # epochs between evaluations during training (0: none)
    seed: int = DEFAULT_SEED              # --seed: TrainConfig.seed; others derived from it


def scaled_lr(s, values):
    """The LR values for the settings' batch size (see RecipeFields.lr_batch)."""
    if not s.lr_batch:
        return tuple(values)
    return tuple(v * s.batch_size / s.lr_batch for v in values)


def optimizer_fields(s, doubled):
    """TrainConfig fields of the optimizer: `doubled` are the method's doubled-gradient keywords."""
    return dict(nesterov=s.nesterov, double_gradient_keywords=doubled if s.double_gradients else ())


def input_spec(s, model, file_spec=None):
    """The run's input: the flags' (settings') image size and normalization over the start file's
    spec, over the model's default."""
    return spec_with(file_spec or default_spec(model), s.image_size, s.normalization)


def stored_spec(spec, model):
    """What a weight file records: the spec, or None where it is the model's default."""
    return None if spec == default_spec(model) else spec


def periodic_eval(s, model, deps, data_dir, num_examples, spec=None, log=print):
    """The hooks of `--eval_every`: [PeriodicEvaluation] every that many epochs, or []."""
    if not s.eval_every:
        return []
    every = max(1, int(round(s.eval_every * num_examples / s.batch_size)))
    return [PeriodicEvaluation(model, deps, data_dir, every, s.eval_batch_size, spec, log)]


def recorded(s, spec=None, model=None):
    """The fields of a stage's settings in run.json that differ from the originals' defaults."""
    out = {}
    if not s.nesterov:
        out['nesterov'] = False
    if not s.double_gradients:
        out['double_gradients'] = False
    if s.lr_batch:
        out['lr_batch'] = s.lr_batch
    if s.eval_every:
        out['eval_every'] = s.eval_every  # its hook's state is in the checkpoints
    if s.seed != DEFAULT_SEED:
        out['seed'] = s.seed
    if s.flops_convention != 'torchvision':
        out['flops_convention'] = s.flops_convention
    if spec is not None and stored_spec(spec, model) is not None:
        out['input'] = spec.describe()
    if getattr(s, 'min_width', 1) != 1:
        out['min_width'] = s.min_width
    if getattr(s, 'round_to', 1) != 1:
        out['round_to'] = s.round_to
    if model is not None and not model.builtin:
        out['network_sha256'] = description.digest(model.network)  # a changed net.py differs
    return out
