"""The project's speed benchmark: in one invocation, training images/s of this project against the
same architecture in Keras 3 `model.fit` and in PyTorch eager (when torch is importable), plus the
project's own figures, each as a ratio to a baseline measured in the same invocation.

    python bench/train_throughput.py                       # everything, 3 rounds
    python bench/train_throughput.py --sections train --models vc --rounds 1
    python bench/train_throughput.py --sections aofp,csgd --models vc,dc40,src56,src110
    python bench/train_throughput.py --sections resnet50,imagenet_pipeline --rounds 3
    python bench/train_throughput.py --sections resnet50 --image_size 64 --rounds 1  # quick

Sections:
  train     vc and dc40 training, batch 64, fp32, NHWC/channels-last, Nesterov momentum 0.9, L2 1e-4
            on kernels, BN decay 0.9 / eps 1e-3, one fixed in-memory batch: ours vs Keras vs PyTorch
  bf16      the same with bfloat16 compute (ours: --precision bf16 and bf16_activations; PyTorch:
            CPU autocast)
  fp16      the same with float16 compute and dynamic loss scaling (ours: --precision fp16;
            PyTorch: autocast to float16 with GradScaler), for GPUs without bfloat16
  pipeline  vc training fed from the real tfrecords (decode, pad-crop-flip, shuffle) vs in memory
  aofp      a training step with the AOFP search vs a plain step, for vc (all 13 layers), src56 and
            src110 (the internal layer of every block, 27 / 54) among --models
  csgd      a training step with C-SGD vs a plain step, for dc40 (all 39 layers clustered, 3-3-3),
            src56 and src110 (every channel group to 5/8, tied groups included) among --models
  eval      evaluation images/s (vc, test split, batch 500, median of 5 exact passes)
  infer     inference of a pruned vc (-65.8% FLOPs) vs the full vc, at batch 64 and batch 1
            (--bf16_routes: also oneDNN's rewrite and float32 kernel gradients on the 4x4 and
            smaller outputs, in the same alternation)
  routes    vc and dc40 training with routes tried and not kept, against the default in fp32 and
            bf16: one inter-op thread (--inter_threads 1; TensorFlow's default is one per core) and
            oneDNN's automatic bfloat16 graph rewrite of the fp32 graph (--onednn_bf16_rewrite),
            and --precision bf16_activations (bfloat16 activations end to end; since round 3
            also a job of the bf16 and resnet50 sections)
  bn        training with the aligned batch norm (tf_benchmarks/network/batch_norm.py, the default) vs
            oneDNN's plain fused kernel (AOFP_CSGD_ALIGNED_BN=0), fp32 and bf16, for dc40 and a
            vc pruned to widths that are not multiples of 8 (PRUNED_VC_ODD) among --models
  replicas  vc and dc40 training with --strategy mirrored on --num_devices devices (GPUs where
            present, else logical CPU devices) vs the default strategy, the same global batch
            (--per_device_batch: --batch_size on every device, a global batch num_devices times
            it; --replicas_models: other models than --models)
  resnet50  sres50 training, batch 32 (--resnet_batch_size), --image_size (224) in memory, fp32 and
            --mixed_precision (bf16, or fp16), plain momentum 0.9, L2 1e-4 on kernels, BN decay
            0.9 / eps 1e-5: ours vs torchvision's ResNet-50 in PyTorch eager
            (bench/torch_resnet50.py, channels-last, the same widths and 1000 classes), with the
            peak RSS ratio; --resnet_steps (10) timed steps after --resnet_warmup (3)
  imagenet_pipeline
            the ImageNet input pipeline alone (tf_benchmarks/data/imagenet_pipeline.py: batches
            of training_batches at --image_size, torchvision's and the inception crop) on a
            synthetic set written by datasets/build_imagenet_data.py to a temporary folder (1,200
            JPEGs of about 400x350; --imagenet_dir to reuse one), and sres50 training fed from it
            vs in memory, fp32 and bf16
Every measurement runs in its own worker process (Keras 3 needs eager TF2, the project uses v1 graph
mode; each process's peak RSS is reported); runs of one comparison alternate within each round and
the medians over the rounds are compared. The first --warmup steps of each run are not timed.
PyTorch runs on the GPU where torch sees one (--device), as TensorFlow does; every result names
its device. --one_process runs every measurement in this process instead, for a check of the
commands (bench/gpu_check.sh --dry_run): its peak RSS is the process's, not the run's, and PyTorch
runs on one thread (on two, beside TensorFlow's idle threads, a step took 40 times as long).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.methods import AOFP_MODELS, CSGD_MODELS  # noqa: E402

SECTIONS = ('train', 'bf16', 'fp16', 'pipeline', 'aofp', 'csgd', 'eval', 'infer', 'replicas',
            'routes', 'bn', 'resnet50', 'imagenet_pipeline')
KERAS_MODELS = ('vc', 'dc40')                   # the models built in Keras too
TORCH_MODELS = ('vc', 'dc40', 'src56', 'sres50')  # ... and in PyTorch
MIXED = ('bf16', 'fp16')                         # the reduced precisions
PRUNED_VC = (40, 40, 72, 80, 152, 152, 152, 288, 288, 288, 256, 256, 256)
# a vc pruned to widths that are not multiples of 8, as AOFP's moves leave them
PRUNED_VC_ODD = (36, 44, 76, 84, 156, 148, 140, 292, 284, 276, 252, 244, 236)
SUBSET = os.path.join(REPO, '..', 'shared', 'data', 'cifar10-subset', 'cifar-10-batches-py')
# the optimizer of each model's recipe (presets): the originals' Nesterov and doubled bias/beta
# gradients, or sres50's tf_cnn_benchmarks recipe (plain momentum, nothing doubled)
RECIPES = {'sres50': dict(nesterov=False, double_gradient_keywords=())}
CROPS = ('torchvision', 'inception')


def _result(images_per_sec, device, **extra):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('RESULT ' + json.dumps(dict(images_per_sec=images_per_sec, peak_rss_mb=peak,
                                      device=device, **extra)), flush=True)


def _tf_device(count=1):
    """Where TensorFlow trains: its first `count` GPUs by name, else the CPU."""
    import tensorflow as tf2
    gpus = tf2.config.list_physical_devices('GPU')
    if not gpus:
        return 'CPU' if count == 1 else 'CPU (%d logical devices)' % count
    names = [tf2.config.experimental.get_device_details(g).get('device_name', g.name)
             for g in gpus[:count]]
    return ', '.join('GPU:%d %s' % (i, n) for i, n in enumerate(names))


def _deps(args, model):
    return tuple(int(d) for d in args.deps.split(',')) if args.deps else model.default_deps


# -- this project ---------------------------------------------------------------------------------
def _train_ours(args, builder_factory=None, grad_handler=None, hooks=(), config=None):
    from tf_benchmarks.network.convnet_builder import ConvNetBuilder
    from bench.in_memory_batch import InMemoryBatch
    from tf_benchmarks.models.registry import get_model
    from tf_benchmarks.engine.train_config import TrainConfig
    from tf_benchmarks.engine.hooks import TrainHook
    from tf_benchmarks.engine.method import MethodBundle
    from tf_benchmarks.engine.trainer import Trainer

    times = []

    class Timer(TrainHook):
        def after_step(self, step, values):
            times.append(time.perf_counter())

    config = TrainConfig(num_steps=args.warmup + args.steps, batch_size=args.batch_size,
                         lr_values=[0.01], display_every=10 ** 9, summary_every=0,
                         checkpoint_every=0, checkpoint_secs=float('inf'),
                         precision=args.precision,
                         **dict(RECIPES.get(args.model, {}), **(config or {})))
    model = get_model(args.model)
    deps = _deps(args, model)
    if model.image_size == 32:
        data = args.data if args.data != 'memory' else InMemoryBatch()
    else:
        data = _imagenet_source(args, model)
    with tempfile.TemporaryDirectory() as train_dir:
        method = MethodBundle('bench', builder_factory=builder_factory or ConvNetBuilder,
                              hooks=tuple(hooks),
                              grad_handler=grad_handler(model.trace(deps)) if grad_handler
                              else None)
        trainer = Trainer(model, deps, data, config, train_dir, method=method, hooks=[Timer()],
                          log=lambda *_: None)
        trainer.run()
    _result(args.steps * args.batch_size / (times[-1] - times[args.warmup - 1]),
            _tf_device(trainer.replicas.num_replicas))


class InMemoryImages:
    """InMemoryBatch at another image size and number of classes (sres50's 1000)."""

    def __init__(self, image_size, num_classes, num_examples=1281167, seed=0):
        self.image_size, self.num_classes = image_size, num_classes
        self.num_examples, self.seed = num_examples, seed
        self.description = 'an in-memory batch of %dx%d images' % (image_size, image_size)

    def batches(self, batch_size, augmentation=True, shuffle=True, seed=None):
        import numpy as np
        import tensorflow.compat.v1 as tf
        rng = np.random.default_rng(self.seed)
        images = rng.uniform(-1, 1, (batch_size, self.image_size, self.image_size, 3))
        labels = rng.integers(0, self.num_classes, batch_size).astype(np.int32)
        images = tf.Variable(images.astype(np.float32), trainable=False, name='in_memory_images',
                             collections=[tf.GraphKeys.LOCAL_VARIABLES])
        return images.read_value(), tf.constant(labels)

    def initialize(self, session, step):
        """Nothing to position: the batch is the same every step."""


def _imagenet_source(args, model):
    """sres50's training source: the in-memory batch, or the training shards of --data (an
    ImageNet-format directory) through the project's pipeline at --image_size with --crop, with
    the model's 1000 logits whatever the set's classes (the same network as in memory)."""
    if args.data == 'memory':
        return InMemoryImages(args.image_size, model.num_classes)
    from tf_benchmarks.data import sources
    from tf_benchmarks.network.input_spec import InputSpec
    data = sources.ShardedData(sources.ShardedSet.open(args.data), InputSpec(args.image_size),
                               args.crop)
    data.logits = model.num_classes
    return data


def run_imagenet_pipeline(args):
    """The input pipeline alone: batches of training_batches pulled through the iterator as the
    trainer does (not copied out), at --image_size with --crop, on the training shards of --data."""
    import tensorflow.compat.v1 as tf
    from tf_benchmarks.data import imagenet_pipeline, sources
    from tf_benchmarks.engine import session
    from tf_benchmarks.network.input_spec import INCEPTION
    sharded = sources.ShardedSet.open(args.data)
    with tf.Graph().as_default() as graph:
        ds = imagenet_pipeline.training_batches(
            sharded.split('train'), tf.constant(0, tf.int64), args.batch_size, args.image_size,
            INCEPTION, sharded.num_classes, sharded.label_offset, args.crop)
        images, labels = tf.data.make_one_shot_iterator(ds).get_next()
        pulled = tf.group(images, labels)
        with tf.Session(graph=graph, config=session.session_config()) as sess:
            for _ in range(args.warmup):
                sess.run(pulled)
            start = time.perf_counter()
            for _ in range(args.steps):
                sess.run(pulled)
            elapsed = time.perf_counter() - start
    _result(args.steps * args.batch_size / elapsed, 'CPU (the input pipeline)')


def _fp32_filter_gradient_builder(max_pixels=16):
    """ConvNetBuilder for --precision bf16 whose convolutions with at most `max_pixels` output
    positions per image (vc's 4x4 and 2x2 layers) compute their kernel gradient in float32 from
    the float32 input and output gradient; the forward pass and the input gradient stay bfloat16.
    One trace of a vc bf16 step (bench/onednn_kernels.py) had oneDNN's AMX bfloat16 weight-gradient
    kernel 11-19x its own forward time on those layers, 2x on the 32x32 ones."""
    from tf_benchmarks.network.convnet_builder import ConvNetBuilder
    import tensorflow.compat.v1 as tf

    class Fp32FilterGradient(ConvNetBuilder):
        def conv2d(self, x, kernel, strides, mode):
            h, w = x.shape.as_list()[1:3]
            if (self.conv_dtype == tf.float32 or mode != 'SAME' or h is None
                    or -(-h // strides[0]) * -(-w // strides[1]) > max_pixels):
                return super().conv2d(x, kernel, strides, mode)
            stride = [1, strides[0], strides[1], 1]

            @tf.custom_gradient
            def conv(x, kernel):
                y = tf.nn.conv2d(tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16), stride,
                                 mode)

                def grad(dy):
                    dx = tf.nn.conv2d_backprop_input(tf.shape(x), tf.cast(kernel, tf.bfloat16),
                                                     tf.cast(dy, tf.bfloat16), stride, mode)
                    dw = tf.nn.conv2d_backprop_filter(x, tf.shape(kernel), dy, stride, mode)
                    return tf.cast(dx, tf.float32), dw
                return tf.cast(y, tf.float32), grad
            return conv(x, tf.convert_to_tensor(kernel))
    return Fp32FilterGradient


def run_ours(args):
    if args.onednn_bf16_rewrite:  # grappler's oneDNN auto mixed precision on the fp32 graph
        from tensorflow.core.protobuf import rewriter_config_pb2
        from tf_benchmarks.engine import session
        plain = session.session_config

        def rewritten(*a, **k):
            config = plain(*a, **k)
            config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
                rewriter_config_pb2.RewriterConfig.ON)
            return config
        session.session_config = rewritten
    _train_ours(args, config=dict(inter_threads=args.inter_threads),
                builder_factory=_fp32_filter_gradient_builder(args.fp32_filter_gradients)
                if args.fp32_filter_gradients else None)


def run_mirrored(args):
    """Ours under MirroredStrategy on --num_devices devices, the global batch split over them
    (the default strategy again afterwards, for --one_process)."""
    from tf_benchmarks.engine import replicas
    replicas.configure('mirrored', args.num_devices)
    try:
        _train_ours(args)
    finally:
        replicas.configure('default')


def run_aofp(args):
    from bench import methods
    from tf_benchmarks.models.registry import get_model
    _train_ours(args, **methods.setup('aofp', get_model(args.model)))


def run_csgd(args):
    from bench import methods
    from tf_benchmarks.models.registry import get_model
    _train_ours(args, **methods.setup('csgd', get_model(args.model)))


def _random_weights(trace):
    import numpy as np
    rng = np.random.default_rng(0)
    return {n: (np.abs(rng.normal(1, 0.1, v.shape)) if n.endswith('variance') else
                rng.normal(0, 0.05, v.shape)).astype(np.float32) for n, v in trace.variables.items()}


def run_eval(args):
    from tf_benchmarks.engine.evaluation import Evaluator
    from tf_benchmarks.models.registry import get_model
    model = get_model(args.model)
    deps = _deps(args, model)
    speeds = []
    with Evaluator(model, deps, args.data, batch_size=500) as evaluator:
        evaluator.load(_random_weights(model.trace(deps)))
        evaluator.evaluate()
        for _ in range(5):
            start = time.perf_counter()
            result = evaluator.evaluate()
            speeds.append(result.num_examples / (time.perf_counter() - start))
    _result(sorted(speeds)[2], _tf_device())


def run_infer(args):
    import numpy as np
    from tf_benchmarks.engine import session
    from tf_benchmarks.network.convnet_builder import ConvNetBuilder
    from tf_benchmarks.models.registry import get_model
    from tf_benchmarks.engine.weights import key_variables, load_weights
    import tensorflow.compat.v1 as tf
    model = get_model(args.model)
    deps = _deps(args, model)
    images = np.random.default_rng(0).uniform(-1, 1, (args.batch_size, 32, 32, 3))
    with tf.Graph().as_default() as graph:
        inputs = tf.constant(images.astype(np.float32))
        builder = ConvNetBuilder(inputs, phase_train=False)
        logits = model.build(builder, deps).tensor
        with tf.Session(graph=graph, config=session.session_config()) as sess:
            load_weights(sess, key_variables(builder.trace), _random_weights(builder.trace), 'w')
            runs = max(args.steps, 200 // args.batch_size)
            for _ in range(args.warmup):
                sess.run(logits.op)
            start = time.perf_counter()
            for _ in range(runs):
                sess.run(logits.op)
            elapsed = time.perf_counter() - start
    _result(runs * args.batch_size / elapsed, _tf_device())


# -- Keras 3 --------------------------------------------------------------------------------------
def keras_model(name):
    import keras
    from keras import layers
    from tf_benchmarks.models.registry import get_model
    reg = keras.regularizers.L2(0.5e-4)  # Keras L2 is l2*sum(w^2): same as 1e-4 * l2_loss
    bn = dict(momentum=0.9, epsilon=1e-3)
    inputs = keras.Input((32, 32, 3))
    if name == 'vc':
        from tf_benchmarks.models.vc_model import POOL_AFTER
        x = inputs
        for i, width in enumerate(get_model('vc').default_deps):
            x = layers.Conv2D(width, 3, padding='same', use_bias=False, kernel_regularizer=reg)(x)
            x = layers.ReLU()(layers.BatchNormalization(**bn)(x))
            if i in POOL_AFTER:
                x = layers.MaxPooling2D(2)(x)
        x = layers.Dense(512, activation='relu', kernel_regularizer=reg)(layers.Flatten()(x))
        outputs = layers.Dense(11, kernel_regularizer=reg)(x)
    else:
        deps = get_model('dc40').default_deps
        x = layers.Conv2D(deps[0], 3, padding='same', use_bias=False, kernel_regularizer=reg)(inputs)
        layer = 1
        for stage in range(3):
            for _ in range(12):
                y = layers.ReLU()(layers.BatchNormalization(**bn)(x))
                y = layers.Conv2D(deps[layer], 3, padding='same', use_bias=False,
                                  kernel_regularizer=reg)(y)
                x = layers.Concatenate()([x, y])
                layer += 1
            if stage < 2:
                x = layers.ReLU()(layers.BatchNormalization(**bn)(x))
                x = layers.Conv2D(deps[layer], 1, use_bias=False, activation='relu',
                                  kernel_regularizer=reg)(x)
                x = layers.AveragePooling2D(2)(x)
                layer += 1
        x = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization(**bn)(x)))
        outputs = layers.Dense(10, kernel_regularizer=reg)(x)
    return keras.Model(inputs, outputs)


def run_keras(args):
    import numpy as np
    import keras
    import tensorflow as tf

    model = keras_model(args.model)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size).astype(np.int32)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(data, steps_per_epoch=args.warmup + args.steps, epochs=1, verbose=0,
              callbacks=[Timer()])
    _result(args.steps * args.batch_size / (times[-1] - times[args.warmup - 1]), _tf_device())


# -- PyTorch eager (optional: only where torch is importable) ------------------------------------
def torch_model(name):
    import torch
    from torch import nn
    from tf_benchmarks.models.registry import get_model

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)  # TF decay 0.9

    if name == 'sres50':
        from bench.torch_resnet50 import ResNet50
        return ResNet50(get_model('sres50').num_classes)
    if name == 'src56':
        return _torch_cifar_resnet(9, bn)
    if name == 'vc':
        from tf_benchmarks.models.vc_model import POOL_AFTER
        layers, cin = [], 3
        for i, width in enumerate(get_model('vc').default_deps):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), bn(width),
                       nn.ReLU(inplace=True)]
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            cin = width
        layers += [nn.Flatten(), nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 11)]
        return nn.Sequential(*layers)

    deps = get_model('dc40').default_deps

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.bn, self.conv = bn(cin), nn.Conv2d(cin, cout, 3, padding=1, bias=False)

        def forward(self, x):
            return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)

    layers, cin, layer = [nn.Conv2d(3, deps[0], 3, padding=1, bias=False)], deps[0], 1
    for stage in range(3):
        for _ in range(12):
            layers.append(Block(cin, deps[layer]))
            cin += deps[layer]
            layer += 1
        if stage < 2:
            layers += [bn(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, deps[layer], 1, bias=False),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            cin = deps[layer]
            layer += 1
    layers += [bn(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def _torch_cifar_resnet(n, bn):
    """src56 (n = 9) as tf_benchmarks/models/resnet_model.py builds it: a 3x3 stem, 3 stages of n
    blocks (3x3, 3x3, + shortcut; the first block of stages 2 and 3 with stride 2 and a 1x1
    stride-2 projection + BN), global average pool, FC to 10."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = bn(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = bn(cout)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))
                             if stride != 1 else nn.Identity())

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(self.shortcut(x) + y)

    layers, cin = [nn.Conv2d(3, 16, 3, padding=1, bias=False), bn(16), nn.ReLU(inplace=True)], 16
    for s, width in enumerate((16, 32, 64)):
        for b in range(n):
            layers.append(Block(cin, width, 2 if s > 0 and b == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def _torch_device(torch, name):
    """--device: auto is the GPU where torch sees one (as TensorFlow places its ops), else the
    CPU."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def run_torch(args):
    import contextlib
    import torch
    device = _torch_device(torch, args.device)
    model = torch_model(args.model).to(device=device, memory_format=torch.channels_last)
    kernels = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.SGD([{'params': kernels, 'weight_decay': 1e-4},
                                 {'params': others, 'weight_decay': 0.0}],
                                lr=0.01, momentum=0.9,
                                nesterov=RECIPES.get(args.model, {}).get('nesterov', True))
    size, classes = (args.image_size, 1000) if args.model == 'sres50' else (32, 10)
    x = torch.rand(args.batch_size, 3, size, size).mul_(2).sub_(1).to(
        device=device, memory_format=torch.channels_last)
    y = torch.randint(0, classes, (args.batch_size,)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    dtypes = {'bf16': torch.bfloat16, 'fp16': torch.float16}
    autocast = (torch.autocast(device.type, dtype=dtypes[args.precision])
                if args.precision in dtypes else contextlib.nullcontext())
    # fp16: GradScaler's dynamic loss scaling (2**15, x2 after 2000 finite steps), as ours
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == 'fp16')
    cuda = device.type == 'cuda'
    times = []
    model.train()
    for _ in range(args.warmup + args.steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()  # the step is done, not just queued
        times.append(time.perf_counter())
    _result(args.steps * args.batch_size / (times[-1] - times[args.warmup - 1]),
            torch.cuda.get_device_name(device) if cuda else 'CPU')


WORKERS = {'ours': run_ours, 'keras': run_keras, 'torch': run_torch, 'aofp': run_aofp,
           'csgd': run_csgd, 'eval': run_eval, 'infer': run_infer, 'mirrored': run_mirrored,
           'imagenet_pipeline': run_imagenet_pipeline}


# -- orchestration --------------------------------------------------------------------------------
class Job:
    """One kind of measurement: a worker with its arguments, measured once per round."""

    def __init__(self, key, worker, model, precision='fp32', data='memory', deps=None,
                 batch_size=None, extra=(), env=None, steps=None, warmup=None):
        self.key, self.worker, self.model, self.extra = key, worker, model, list(extra)
        self.env = env or {}
        self.precision, self.data, self.deps, self.batch_size = precision, data, deps, batch_size
        self.steps, self.warmup = steps, warmup
        self.results = []

    def worker_args(self, args):
        out = ['--worker', self.worker, '--models', self.model,
               '--steps', str(self.steps or args.steps),
               '--warmup', str(self.warmup or args.warmup),
               '--batch_size', str(self.batch_size or args.batch_size),
               '--precision', self.precision, '--data', self.data,
               '--image_size', str(args.image_size), '--device', args.device]
        if self.deps:
            out += ['--deps', ','.join(map(str, self.deps))]
        return out + self.extra

    def run(self, args):
        if args.one_process:
            stdout, stderr = self._run_here(args)
        else:
            cmd = [sys.executable, os.path.abspath(__file__)] + self.worker_args(args)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **self.env)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            stdout, stderr = proc.stdout, proc.stderr
        for line in stdout.splitlines():
            if line.startswith('RESULT '):
                result = json.loads(line[len('RESULT '):])
                self.results.append(result)
                print('  %-26s %8.1f images/s   peak RSS %5.0f MB   %s' % (
                    self.key, result['images_per_sec'], result['peak_rss_mb'],
                    result['device']), flush=True)
                return
        raise RuntimeError('%s failed:\n%s' % (self.key, stderr[-3000:]))

    def _run_here(self, args):
        """--one_process: the worker called in this process (graph mode, set up by main)."""
        import contextlib
        import io
        import traceback
        if self.worker == 'keras' or self.env:
            raise RuntimeError('%s needs its own process; drop --one_process' % self.key)
        worker = parser().parse_args(self.worker_args(args))
        worker.model = worker.models
        if self.worker == 'torch':  # one thread: two fight TensorFlow's idle ones (40x slower)
            import torch
            torch.set_num_threads(1)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                WORKERS[worker.worker](worker)
        except Exception:  # noqa: BLE001 -- reported as the job's failure, as a worker's would be
            return out.getvalue(), traceback.format_exc()
        return out.getvalue(), ''

    @property
    def median(self):
        values = sorted(r['images_per_sec'] for r in self.results)
        return values[len(values) // 2]

    @property
    def peak_rss_mb(self):
        return max(r['peak_rss_mb'] for r in self.results)


def _data_dir(args):
    if args.data_dir:
        return args.data_dir
    from datasets import download_and_convert_cifar10 as converter
    path = tempfile.mkdtemp(prefix='bench_cifar10_')
    if os.path.exists(os.path.join(SUBSET, 'data_batch_1')):
        converter.run(path, batches_dir=SUBSET)
    else:
        converter.run(path, synthetic=6000)
    return path


def _imagenet_dir(args):
    """A synthetic ImageNet-format set written by the project's converter (its figures printed)."""
    if args.imagenet_dir:
        return args.imagenet_dir
    path = tempfile.mkdtemp(prefix='bench_imagenet_')
    cmd = [sys.executable, os.path.join(REPO, 'datasets', 'build_imagenet_data.py'),
           '--output_directory', path, '--synthetic', '1000', '--image_size', '375',
           '--synthetic_classes', '10', '--train_shards', '4', '--validation_shards', '1',
           '--num_workers', '2']
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    if proc.returncode:
        shutil.rmtree(path, ignore_errors=True)
        raise RuntimeError('the converter failed:\n%s' % proc.stderr[-3000:])
    print('synthetic ImageNet-format set (1,000 training JPEGs of ~400x350) in %s: %s'
          % (path, ' '.join(l for l in proc.stdout.splitlines() if ' images in ' in l and
                    l.endswith(' s')).lstrip('> ')), flush=True)
    return path


def _resnet_jobs(args, imagenet):
    """The jobs of the resnet50 and imagenet_pipeline sections, by key (shared between them)."""
    common = dict(batch_size=args.resnet_batch_size, steps=args.resnet_steps,
                  warmup=args.resnet_warmup)
    jobs = {}
    for precision in ('fp32', args.mixed_precision):
        suffix = '' if precision == 'fp32' else ' ' + precision
        jobs['sres50 ours' + suffix] = Job('sres50 ours' + suffix, 'ours', 'sres50', precision,
                                           **common)
        if precision == 'bf16':
            jobs['sres50 ours bf16 activations'] = Job('sres50 ours bf16 activations', 'ours',
                                                       'sres50', 'bf16_activations', **common)
        jobs['sres50 torch' + suffix] = Job('sres50 torch' + suffix, 'torch', 'sres50', precision,
                                            **common)
        if imagenet:
            jobs['sres50 ours imagenet' + suffix] = Job(
                'sres50 ours imagenet' + suffix, 'ours', 'sres50', precision, data=imagenet,
                extra=['--crop', 'torchvision'], **common)
    for crop in CROPS if imagenet else ():
        jobs['pipeline %s crop' % crop] = Job(
            'pipeline %s crop' % crop, 'imagenet_pipeline', 'sres50', data=imagenet,
            batch_size=args.resnet_batch_size, steps=30, warmup=5, extra=['--crop', crop])
    return jobs


def plan(args, frameworks, data, imagenet=None):
    """Groups of jobs whose runs alternate; each group is one comparison."""
    models, sections, groups = args.models.split(','), args.sections.split(','), []
    ours = {m: Job('%s ours' % m, 'ours', m) for m in models}
    peers = {'keras': KERAS_MODELS, 'torch': TORCH_MODELS}
    if 'train' in sections:
        for m in models:
            groups.append([ours[m]] + [Job('%s %s' % (m, fw), fw, m) for fw in frameworks
                                       if fw != 'ours' and m in peers[fw]])
    for precision in [p for p in MIXED if p in sections]:
        for m in models:
            routes = [Job('%s oneDNN bf16 rewrite' % m, 'ours', m,
                          extra=['--onednn_bf16_rewrite']),
                      Job('%s fp32 filter grads bf16' % m, 'ours', m, 'bf16',
                          extra=['--fp32_filter_gradients', '16'])] \
                if args.bf16_routes and precision == 'bf16' else []
            activations = ([Job('%s ours bf16 activations' % m, 'ours', m, 'bf16_activations')]
                           if precision == 'bf16' else [])
            groups.append([Job('%s ours %s' % (m, precision), 'ours', m, precision)] +
                          activations +
                          ([Job('%s torch %s' % (m, precision), 'torch', m, precision)]
                           if 'torch' in frameworks and m in TORCH_MODELS else []) + routes)
    if 'pipeline' in sections and 'vc' in models:
        groups.append([ours['vc'], Job('vc ours tfrecords', 'ours', 'vc', data=data)])
    if 'aofp' in sections:
        for m in [m for m in models if m in AOFP_MODELS]:
            groups.append([ours[m], Job('%s AOFP search' % m, 'aofp', m)])
    if 'csgd' in sections:
        for m in [m for m in models if m in CSGD_MODELS]:
            groups.append([ours[m], Job('%s C-SGD' % m, 'csgd', m)])
    if 'eval' in sections and 'vc' in models:
        groups.append([Job('vc eval', 'eval', 'vc', data=data)])
    if 'replicas' in sections:
        batch = args.batch_size * (args.num_devices if args.per_device_batch else 1)
        for m in (args.replicas_models.split(',') if args.replicas_models else models):
            ours.setdefault(m, Job('%s ours' % m, 'ours', m))
            groups.append([ours[m], Job('%s mirrored x%d' % (m, args.num_devices), 'mirrored', m,
                                        batch_size=batch,
                                        extra=['--num_devices', str(args.num_devices)])])
    if 'infer' in sections and 'vc' in models:
        for batch in (64, 1):
            groups.append([Job('vc infer full b%d' % batch, 'infer', 'vc', batch_size=batch),
                           Job('vc infer pruned b%d' % batch, 'infer', 'vc', deps=PRUNED_VC,
                               batch_size=batch)])
    if 'routes' in sections:
        for m in models:
            groups.append([Job('%s ours' % m, 'ours', m),
                           Job('%s inter_op 1' % m, 'ours', m, extra=['--inter_threads', '1'])])
            groups.append([Job('%s ours bf16' % m, 'ours', m, 'bf16'),
                           Job('%s inter_op 1 bf16' % m, 'ours', m, 'bf16',
                               extra=['--inter_threads', '1']),
                           Job('%s oneDNN bf16 rewrite' % m, 'ours', m,
                               extra=['--onednn_bf16_rewrite']),
                           Job('%s bf16 activations' % m, 'ours', m, 'bf16_activations')])
    r50 = _resnet_jobs(args, imagenet)
    mixed = ' ' + args.mixed_precision
    if 'resnet50' in sections:
        for suffix in ('', mixed):
            groups.append([r50['sres50 ours' + suffix]] + (
                [r50['sres50 ours bf16 activations']] if suffix == ' bf16' else []) + (
                [r50['sres50 torch' + suffix]] if 'torch' in frameworks else []))
    if 'imagenet_pipeline' in sections:
        groups.append([r50['pipeline %s crop' % crop] for crop in CROPS])
        for suffix in ('', mixed):
            groups.append([r50['sres50 ours' + suffix], r50['sres50 ours imagenet' + suffix]])
    if 'bn' in sections:
        for m, deps, label in (('dc40', None, 'dc40'), ('vc', PRUNED_VC_ODD, 'pruned vc')):
            for precision in ('fp32', 'bf16') if m in models else ():
                suffix = '' if precision == 'fp32' else ' bf16'
                groups.append([Job('%s aligned BN%s' % (label, suffix), 'ours', m, precision,
                                   deps=deps),
                               Job('%s fused BN%s' % (label, suffix), 'ours', m, precision,
                                   deps=deps, env={'AOFP_CSGD_ALIGNED_BN': '0'})])
    return groups


def report(groups, mixed_precision='bf16'):
    jobs = {}
    for group in groups:
        for job in group:
            jobs[job.key] = job
    rows = [('measurement', 'images/s (median)', 'ratio', 'target')]

    def ratio(a, b, target='', label=None):
        if a in jobs and b in jobs:
            rows.append((label or '%s / %s' % (a, b), '',
                         '%.2fx' % (jobs[a].median / jobs[b].median), target))
    for key, job in jobs.items():
        rows.append((key, '%.1f' % job.median, '', ''))
    for m, target_torch, target_keras in (('vc', '>= 1.15x', '>= 1.5x'),
                                          ('dc40', '>= 1.05x', '>= 1.1x'), ('src56', '', '')):
        ratio('%s ours' % m, '%s torch' % m, target_torch)
        ratio('%s ours' % m, '%s keras' % m, target_keras)
        for precision in MIXED:
            ratio('%s ours %s' % (m, precision), '%s ours' % m)
            ratio('%s ours %s' % (m, precision), '%s torch %s' % (m, precision))
        for key in [k for k in jobs if k.startswith('%s mirrored' % m)]:
            ratio(key, '%s ours' % m)
    ratio('vc ours tfrecords', 'vc ours', '>= 0.97x')
    for m in ('vc', 'dc40'):
        ratio('%s inter_op 1' % m, '%s ours' % m)
        ratio('%s inter_op 1 bf16' % m, '%s ours bf16' % m)
        ratio('%s oneDNN bf16 rewrite' % m, '%s ours bf16' % m)
        ratio('%s bf16 activations' % m, '%s ours bf16' % m)
        for route in ('oneDNN bf16 rewrite', 'fp32 filter grads bf16'):
            ratio('%s %s' % (m, route), '%s torch bf16' % m)
        ratio('%s fp32 filter grads bf16' % m, '%s ours bf16' % m)
    for key in jobs:
        rows.append(('peak RSS %s, MB' % key, '%.0f' % jobs[key].peak_rss_mb, '', ''))
    for label in ('dc40', 'pruned vc'):
        for suffix in ('', ' bf16'):
            a, b = '%s aligned BN%s' % (label, suffix), '%s fused BN%s' % (label, suffix)
            ratio(a, b)
            if a in jobs and b in jobs:
                rows.append(('peak RSS %s / %s, MB' % (a, b), '%.0f / %.0f' % (
                    jobs[a].peak_rss_mb, jobs[b].peak_rss_mb), '', ''))
    # step-time ratios: the inverse of the images/s ratios
    for m in AOFP_MODELS:
        ratio('%s ours' % m, '%s AOFP search' % m, '<= 1.15x' if m == 'vc' else '<= 1.35x',
              'AOFP search step / plain %s step' % m)
    for m in CSGD_MODELS:
        ratio('%s ours' % m, '%s C-SGD' % m, '<= 1.05x', 'C-SGD step / plain %s step' % m)
    for batch in (64, 1):
        ratio('vc infer pruned b%d' % batch, 'vc infer full b%d' % batch,
              '>= 2.2x' if batch == 64 else '')
    if 'vc ours tfrecords' in jobs:
        rows.append(('peak RSS of vc training (tfrecords), MB', '%.0f'
                     % jobs['vc ours tfrecords'].peak_rss_mb, '', '<= 2500'))
    mixed = ' ' + mixed_precision
    for suffix in ('', mixed):
        a, b = 'sres50 ours' + suffix, 'sres50 torch' + suffix
        ratio(a, b, '>= 1.0x')
        if a in jobs and b in jobs:
            rows.append(('peak RSS %s / %s, MB' % (a, b), '%.0f / %.0f' % (
                jobs[a].peak_rss_mb, jobs[b].peak_rss_mb), '%.2fx' % (
                jobs[a].peak_rss_mb / jobs[b].peak_rss_mb), '<= 1.2x'))
    ratio('sres50 ours' + mixed, 'sres50 ours')
    ratio('sres50 torch' + mixed, 'sres50 torch')
    for suffix in ('', mixed):
        a, b = 'sres50 ours imagenet' + suffix, 'sres50 ours' + suffix
        ratio(a, b, '>= 0.95x')
        if a in jobs:
            rows.append(('peak RSS of %s, MB' % a, '%.0f' % jobs[a].peak_rss_mb, '', ''))
    for crop in CROPS:
        ratio('pipeline %s crop' % crop, 'sres50 ours' + mixed, '',
              'pipeline %s crop alone / sres50 ours%s training' % (crop, mixed))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print('| ' + ' | '.join(c.ljust(w) for c, w in zip(row, width)) + ' |')
        if i == 0:
            print('|' + '|'.join('-' * (w + 2) for w in width) + '|')
    return {key: {'median_images_per_sec': job.median, 'runs': job.results,
                  'device': job.results[-1]['device']} for key, job in jobs.items()}


def _importable(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sections', default=','.join(SECTIONS))
    parser.add_argument('--models', default='vc,dc40')
    parser.add_argument('--frameworks', default='ours,keras,torch')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--batch_size', type=int, default=64)
    parser.add_argument('--data_dir', help='tfrecords for the pipeline/eval sections (default: '
                        'the real CIFAR-10 subset converted to a temporary folder)')
    parser.add_argument('--num_devices', type=int, default=2, help='devices of the replicas '
                        'section (logical CPU devices where there is no GPU)')
    parser.add_argument('--image_size', type=int, default=224, help='input size of the resnet50 '
                        'and imagenet_pipeline sections, e.g. 64 for a quick run')
    parser.add_argument('--resnet_batch_size', type=int, default=32)
    parser.add_argument('--resnet_steps', type=int, default=10, help='timed steps of sres50 runs')
    parser.add_argument('--resnet_warmup', type=int, default=3)
    parser.add_argument('--imagenet_dir', help='ImageNet-format shards for the imagenet_pipeline '
                        'section (default: a synthetic set written by the converter to a '
                        'temporary folder)')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--worker', choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument('--precision', default='fp32', help=argparse.SUPPRESS)
    parser.add_argument('--data', default='memory', help=argparse.SUPPRESS)
    parser.add_argument('--crop', default='torchvision', choices=CROPS, help=argparse.SUPPRESS)
    parser.add_argument('--deps', help=argparse.SUPPRESS)
    parser.add_argument('--inter_threads', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--onednn_bf16_rewrite', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--fp32_filter_gradients', type=int, nargs='?', const=16, default=0,
                        help=argparse.SUPPRESS)
    parser.add_argument('--bf16_routes', action='store_true', help='with the bf16 section: the '
                        'bf16 routes not kept (oneDNN\'s bfloat16 rewrite of the fp32 graph, float32 '
                        'kernel gradients on 4x4 and smaller outputs) in the same alternation as '
                        'ours bf16 and PyTorch autocast')
    parser.add_argument('--mixed_precision', default='bf16', choices=MIXED, help='the reduced '
                        'precision of the resnet50 and imagenet_pipeline sections (fp16 for GPUs '
                        'without bfloat16)')
    parser.add_argument('--per_device_batch', action='store_true', help='replicas section: '
                        '--batch_size on every device (the mirrored runs train a global batch of '
                        '--num_devices x --batch_size)')
    parser.add_argument('--replicas_models', help='the models of the replicas section (default: '
                        '--models)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='where PyTorch trains (auto: the GPU where torch sees one)')
    parser.add_argument('--one_process', action='store_true', help='every measurement in this '
                        'process, one after another: a check of the commands (Keras and --env '
                        'routes excluded), not a measurement of memory')
    return parser


def main():
    args = parser().parse_args()
    if args.worker:
        args.model = args.models
        if args.worker not in ('keras', 'torch'):  # ours: TF1 graph mode, before TF is imported
            from tf_benchmarks.engine import session
            session.graph_mode()
        WORKERS[args.worker](args)
        return
    frameworks = args.frameworks.split(',')
    if 'torch' in frameworks and not _importable('torch'):
        print('torch is not importable: PyTorch runs skipped (pip install torch==2.13.0)')
        frameworks.remove('torch')
    sections = args.sections.split(',')
    if args.one_process:
        from tf_benchmarks.engine import replicas, session
        session.graph_mode()
        if 'replicas' in sections:  # logical CPU devices exist only if made before TF starts
            replicas.configure('mirrored', args.num_devices)
            replicas.configure('default')
    data = _data_dir(args) if {'pipeline', 'eval'} & set(sections) else 'memory'
    imagenet = None
    try:
        imagenet = _imagenet_dir(args) if 'imagenet_pipeline' in sections else None
        _run_rounds(args, plan(args, frameworks, data, imagenet))
    finally:
        if data != 'memory' and data != args.data_dir:
            shutil.rmtree(data, ignore_errors=True)  # the subset converted for this run
        if imagenet and imagenet != args.imagenet_dir:
            shutil.rmtree(imagenet, ignore_errors=True)  # the synthetic set of this run


def _run_rounds(args, groups):
    start = time.time()
    for r in range(args.rounds):
        print('round %d/%d' % (r + 1, args.rounds), flush=True)
        done = set()
        for group in groups:
            for job in (group if r % 2 == 0 else group[::-1]):
                if job.key not in done:
                    job.run(args)
                    done.add(job.key)
    sections = args.sections.split(',')
    resnet = ('; sres50 at batch %d, %dx%d' % (args.resnet_batch_size, args.image_size,
                                               args.image_size)
              if {'resnet50', 'imagenet_pipeline'} & set(sections) else '')
    print('\n%d rounds in %.0f s; batch %d%s, %s\n' % (args.rounds, time.time() - start,
                                                       args.batch_size, resnet, _machine()))
    results = report(groups, args.mixed_precision)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'machine': _machine(), 'args': vars(args), 'results': results}, f, indent=1)


def _machine():
    import platform
    cpu = 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, Python %s' % (cpu, os.cpu_count(), platform.python_version())


if __name__ == '__main__':
    main()
