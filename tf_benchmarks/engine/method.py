"""A method bundle: everything a pruning method gives the trainer for one training run (how the
network is built, the hooks run with every step, the gradient handler after averaging, and the
TrainConfig fields it fixes), as one named object."""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Tuple

from tf_benchmarks.network.convnet_builder import ConvNetBuilder


@dataclasses.dataclass(frozen=True)
class MethodBundle:
    """`builder_factory(images, phase_train, conv_dtype=..., moving_average_updates=...)` returns
    the ConvNetBuilder of a replica (with `precision='bf16_activations'` it also gets
    `activation_dtype=tf.bfloat16`); `hooks` are TrainHooks; `grad_handler(grads_and_vars)` runs
    on the replica-averaged gradients after L2 and gradient doubling; `config` holds TrainConfig
    fields the method sets (e.g. C-SGD's weight decay of 0, applied by its handler instead)."""
    name: str = 'plain'
    builder_factory: Callable = ConvNetBuilder
    hooks: Tuple = ()
    grad_handler: Optional[Callable] = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def configured(self, config):
        """`config` (a TrainConfig) with the method's fields set."""
        return dataclasses.replace(config, **self.config) if self.config else config


PLAIN = MethodBundle()
