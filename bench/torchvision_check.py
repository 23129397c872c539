"""The imported torchvision ResNet-50 against torchvision itself: torchvision's `resnet50()` (random
weights, BN running statistics made non-trivial) saved as a `.pth` state dict, imported by
`aofp_standalone.py import` without torch, and both networks' logits compared on the same images
at 224x224 with torchvision's normalization (the input the imported file records).

torchvision does not import beside the project's torch here, so the two halves run in two Python
environments:

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
    /tmp/tv/bin/python bench/torchvision_check.py torch /tmp/tvcheck    # resnet50.pth, logits.npz
    python bench/torchvision_check.py ours /tmp/tvcheck                 # import, compare, report
"""

import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def pixels(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)


def torch_side(out):
    import torch
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = (pixels().astype(np.float32) - MEAN) / STD
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, 'resnet50.pth'))
    np.savez(os.path.join(out, 'logits.npz'), logits=logits, torch=torch.__version__,
             torchvision=torchvision.__version__)
    print('wrote %s/resnet50.pth and logits.npz (torch %s, torchvision %s)'
          % (out, torch.__version__, torchvision.__version__))


def ours(out):
    hdf5 = os.path.join(out, 'resnet50.hdf5')
    if os.path.exists(hdf5):
        os.remove(hdf5)
    subprocess.run([sys.executable, os.path.join(REPO, 'aofp', 'aofp_standalone.py'), 'import',
                    os.path.join(out, 'resnet50.pth'), '--out', hdf5], check=True)
    sys.path.insert(0, REPO)
    from tf_benchmarks.engine.session import graph_mode
    graph_mode()
    import tensorflow.compat.v1 as tf
    from tf_benchmarks.engine.evaluation import predict_logits
    from tf_benchmarks.files import hdf5_io
    from tf_benchmarks.models.registry import get_model
    from tf_benchmarks.network.input_spec import normalize
    weights = hdf5_io.read_hdf5(hdf5)
    with tf.Graph().as_default(), tf.Session() as sess:
        images = sess.run(normalize(tf.constant(pixels()), weights.input_spec.normalization))
    model = get_model('sres50')
    logits = predict_logits(model, weights.deps, weights.weights, images)
    reference = np.load(os.path.join(out, 'logits.npz'))
    diff = np.abs(logits - reference['logits']).max() / np.abs(reference['logits']).max()
    print('input %s; largest logit difference / largest logit: %.2e (torch %s, torchvision %s); '
          'top-1 agrees on %d of %d images'
          % (weights.input_spec.describe(), diff, reference['torch'], reference['torchvision'],
             int((logits.argmax(1) == reference['logits'].argmax(1)).sum()), len(logits)))
    return diff


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] not in ('torch', 'ours'):
        sys.exit(__doc__)
    torch_side(sys.argv[2]) if sys.argv[1] == 'torch' else ours(sys.argv[2])
