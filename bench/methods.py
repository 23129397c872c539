"""The training steps the benchmarks time and profile besides a plain one, as Trainer arguments:
AOFP's search step and C-SGD's step, each on the model's defaults (see `setup`), with the model's
recipe (sres50: tf_cnn_benchmarks' plain momentum, nothing doubled)."""

import os

import numpy as np

AOFP_MODELS = ('vc', 'src56', 'src110', 'sres50')
CSGD_MODELS = ('dc40', 'src56', 'src110', 'sres50')
# the TrainConfig fields of each model's recipe that differ from the defaults (the CIFAR models:
# the originals' Nesterov momentum and doubled bias/beta gradients, TrainConfig's own defaults)
RECIPES = {'sres50': dict(nesterov=False, double_gradient_keywords=())}


def aofp(model, builder_file=None):
    """A step with AOFP's search on the model's default target layers (`vc`: all 13; the ResNets:
    the internal layer of every block, 27 / 54; `sres50`: its 32 internal layers); no decision is
    taken in a benchmark's steps. `builder_file`: another version of aofp/masked_builder.py (e.g.
    `git show COMMIT:aofp/masked_builder.py > old.py`) to build the search graph with."""
    from aofp.pipeline import check_target_layers, masked_builder_factory
    from aofp.presets import PRESETS
    from aofp.search import AofpSearch
    from aofp.search_hook import SearchHook
    deps = model.default_deps
    layers = check_target_layers(model, PRESETS['paper'][model.name].target_layers)
    search = AofpSearch([np.ones(deps[t], np.float32) for t in layers], 10 ** 9, 0.01, 0,
                        lambda widths: 0.0, 1.0)
    hook = SearchHook(search, layers, os.devnull, remain_log_steps=0)
    factory = masked_builder_factory(layers, search=True)
    if builder_file:
        import importlib.util
        spec = importlib.util.spec_from_file_location('masked_builder_other', builder_file)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        factory = lambda images, phase_train, **options: other.MaskedConvNetBuilder(  # noqa: E731
            images, phase_train, layers, search=True, mask_variables=True, **options)
    return dict(builder_factory=factory, hooks=[hook])


def csgd(model):
    """A C-SGD step as the pipeline's (weight decay only through the handler's decay matrix) with
    every channel group clustered (k-means-free even clusters): `dc40` to 3-3-3 (39 layers), the
    CIFAR ResNets to 5/8 of every width, followers with their pacesetter's clusters (tied groups);
    `sres50` as its recipe (csgd/presets.py): the 32 internal layers to 0.7 of their widths (the
    other groups singletons), strength 0.05 (BN at 0.1 of it), no weight decay on clustered
    kernels and 1e-4 on the others."""
    from csgd import clustering
    from csgd.centripetal import CentripetalHandler
    from csgd.targets import parse_target_deps
    deps = model.default_deps
    spec = {'dc40': '3-3-3', 'sres50': '0.7'}.get(model.name, '5/8')
    target = parse_target_deps(model, deps, spec)[0]
    strength, bn_ratio, clustered_decay = ((0.05, 0.1, 0.0) if model.name == 'sres50'
                                           else (3e-3, 1.0, None))

    def handler(trace):
        plans = {r: clustering.even_clusters(deps[r], target[r]) for r in model.group_roots()}
        return CentripetalHandler(trace, plans, clustering.bn_channel_clusters(trace, plans),
                                  1e-4, strength, bn_ratio * strength, clustered_decay)
    return dict(grad_handler=handler, config=dict(weight_decay=0.0))


def fp32_filter_gradients(model, max_pixels=16):
    """A plain step (for --precision bf16) with bench/train_throughput.py's route: float32 kernel
    gradients on the convolutions of at most `max_pixels` output positions per image."""
    from bench.train_throughput import _fp32_filter_gradient_builder
    return dict(builder_factory=_fp32_filter_gradient_builder(max_pixels))


def bf16_activations(model):
    """A plain step with `--precision bf16_activations` (convolution outputs, BN, ReLU, pooling,
    concatenations and additions in bfloat16), to pair with a `--precision bf16` plain step."""
    return dict(config=dict(precision='bf16_activations'))


def aligned_bn_k2(model):
    """A plain step whose batch norms also take the aligned view at channel counts that are
    multiples of 8 but not of 16 (k = 2; batch_norm.FUSED_MULTIPLE = 16 while the graph is built)."""
    import contextlib
    from tf_benchmarks.network import batch_norm

    @contextlib.contextmanager
    def multiple_16():
        batch_norm.FUSED_MULTIPLE = 16
        try:
            yield
        finally:
            batch_norm.FUSED_MULTIPLE = 8
    return dict(context=multiple_16)


def setup(method, model, **options):
    """{builder_factory, hooks, grad_handler (trace -> handler), config (TrainConfig overrides)},
    the entries that differ from a plain step's; `options` go to the method's function."""
    return {'plain': lambda m: {}, 'aofp': aofp, 'csgd': csgd,
            'fp32_filter_gradients': fp32_filter_gradients,
            'aligned_bn_k2': aligned_bn_k2, 'bf16_activations': bf16_activations}[method](model, **options)


def step_trainer(setup, model, batch_size, precision, image_size=None, deps=None):
    """A Trainer of `model` at `deps` (default: its default widths) with a `setup` (see `setup`)
    and the model's recipe, on the in-memory batch of `image_size` images (default: the model's
    own, 32 or sres50's 224) with labels among the model's logits, for timing and profiling its
    steps outside the training loop."""
    import contextlib
    import tempfile
    from bench.in_memory_batch import InMemoryBatch
    from tf_benchmarks.network.convnet_builder import ConvNetBuilder
    from tf_benchmarks.engine.train_config import TrainConfig
    from tf_benchmarks.engine.method import MethodBundle
    from tf_benchmarks.engine.trainer import Trainer
    deps = model.default_deps if deps is None else tuple(deps)
    fields = dict(RECIPES.get(model.name, {}), precision=precision)
    fields.update(setup.get('config', {}))  # a method's own settings, its precision included
    config = TrainConfig(num_steps=1, batch_size=batch_size, lr_values=[0.01], **fields)
    handler = setup.get('grad_handler')
    method = MethodBundle(setup.get('name', 'plain'), hooks=tuple(setup.get('hooks', ())),
                          builder_factory=setup.get('builder_factory', ConvNetBuilder),
                          grad_handler=handler(model.trace(deps)) if handler else None)
    data = InMemoryBatch(image_size=image_size or model.image_size,
                         num_classes=10 if model.image_size == 32 else model.num_classes)
    with setup.get('context', contextlib.nullcontext)():
        return Trainer(model, deps, data, config, tempfile.mkdtemp(), method=method,
                       log=lambda *_: None)


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
