"""The training steps the benchmarks time and profile besides a plain one, as Trainer arguments:
AOFP's search step and C-SGD's step, each on the model's defaults (see `setup`)."""

import os

import numpy as np

AOFP_MODELS = ('vc', 'src56', 'src110')
CSGD_MODELS = ('dc40', 'src56', 'src110')


def aofp(model):
    """A step with AOFP's search on the model's default target layers (`vc`: all 13; the ResNets:
    the internal layer of every block, 27 / 54); no decision is taken in a benchmark's steps."""
    from aofp.pipeline import check_target_layers, masked_builder_factory
    from aofp.presets import PRESETS
    from aofp.search import AofpSearch
    from aofp.search_hook import SearchHook
    deps = model.default_deps
    layers = check_target_layers(model, PRESETS['paper'][model.name].target_layers)
    search = AofpSearch([np.ones(deps[t], np.float32) for t in layers], 10 ** 9, 0.01, 0,
                        lambda widths: 0.0, 1.0)
    hook = SearchHook(search, layers, os.devnull, remain_log_steps=0)
    return dict(builder_factory=masked_builder_factory(layers, search=True), hooks=[hook])


def csgd(model):
    """A C-SGD step as the pipeline's (weight decay only through the handler's decay matrix) with
    every channel group clustered (k-means-free even clusters): `dc40` to 3-3-3 (39 layers), the
    ResNets to 5/8 of every width, followers with their pacesetter's clusters (tied groups)."""
    from csgd import clustering
    from csgd.centripetal import CentripetalHandler
    from csgd.targets import parse_target_deps
    deps = model.default_deps
    target = parse_target_deps(model, deps, '3-3-3' if model.name == 'dc40' else '5/8')[0]

    def handler(trace):
        plans = {l: clustering.even_clusters(deps[l], target[l]) for l in model.group_roots()}
        return CentripetalHandler(trace, plans, clustering.bn_channel_clusters(trace, plans),
                                  1e-4, 3e-3)
    return dict(grad_handler=handler, config=dict(weight_decay=0.0))


def setup(method, model):
    """{builder_factory, hooks, grad_handler (trace -> handler), config (TrainConfig overrides)},
    the entries that differ from a plain step's."""
    return {'plain': lambda m: {}, 'aofp': aofp, 'csgd': csgd}[method](model)


def step_trainer(setup, model, batch_size, precision):
    """A Trainer of `model` at its default widths with a `setup` (see `setup`), on the in-memory
    batch, for timing and profiling its steps outside the training loop."""
    import tempfile
    from bench.in_memory_batch import InMemoryBatch
    from tf_benchmarks.network.convnet_builder import ConvNetBuilder
    from tf_benchmarks.engine.train_config import TrainConfig
    from tf_benchmarks.engine.method import MethodBundle
    from tf_benchmarks.engine.trainer import Trainer
    config = TrainConfig(num_steps=1, batch_size=batch_size, lr_values=[0.01],
                         precision=precision, **setup.get('config', {}))
    handler = setup.get('grad_handler')
    method = MethodBundle(setup.get('name', 'plain'), hooks=tuple(setup.get('hooks', ())),
                          builder_factory=setup.get('builder_factory', ConvNetBuilder),
                          grad_handler=handler(model.trace(model.default_deps)) if handler
                          else None)
    return Trainer(model, model.default_deps, InMemoryBatch(), config, tempfile.mkdtemp(),
                   method=method, log=lambda *_: None)


def step_runner(trainer, session):
    """A function running one step of `trainer` in `session` as the training loop does: each hook
    sets its per-step state (AOFP's masks), then the step runs with the hooks' outputs (AOFP's
    metrics); its keyword arguments go to `session.run`. Calls the hooks' after_create_session."""
    fetches = [trainer.train_op] + [t for outputs in trainer.hook_outputs for t in outputs]
    for hook in trainer.hooks:
        hook.after_create_session(session, 0)

    def run(**kwargs):
        for hook in trainer.hooks:
            hook.before_step(0)
        session.run(fetches, **kwargs)
    return run
