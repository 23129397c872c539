"""Shared fixtures: small data sets converted once per test session."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_benchmarks.engine.session import graph_mode  # noqa: E402

graph_mode()  # every test runs in TF1 graph mode, as the drivers do

# No latency measured in the stages of prune/csgd1/magnitude1 unless a test asks with --latency
# (the drivers' default is on; the test processes inherit this).
os.environ['AOFP_CSGD_LATENCY'] = '0'


def _find_subset():
    """$CIFAR10_SUBSET_DIR, else shared/data/cifar10-subset next to the checkout or any parent."""
    if os.environ.get('CIFAR10_SUBSET_DIR'):
        return os.environ['CIFAR10_SUBSET_DIR']
    relative = os.path.join('shared', 'data', 'cifar10-subset', 'cifar-10-batches-py')
    folder = os.path.dirname(REPO)
    while True:
        candidate = os.path.join(folder, relative)
        at_root = folder == os.path.dirname(folder)
        if os.path.exists(os.path.join(candidate, 'data_batch_1')) or at_root:
            return candidate
        folder = os.path.dirname(folder)


SUBSET_BATCHES = _find_subset()


@pytest.fixture(scope='session')
def synthetic_dir(tmp_path_factory):
    """640 training and 200 test images of the synthetic set, in the slim format."""
    from datasets import download_and_convert_cifar10 as converter
    path = str(tmp_path_factory.mktemp('synthetic'))
    converter.run(path, synthetic=640, synthetic_test=200, seed=0)
    return path


@pytest.fixture(scope='session')
def subset_batches():
    if not os.path.exists(os.path.join(SUBSET_BATCHES, 'data_batch_1')):
        pytest.skip('the real CIFAR-10 subset was not found (shared/data/cifar10-subset next to the '
                    'checkout or a parent of it; set CIFAR10_SUBSET_DIR to point at it)')
    return SUBSET_BATCHES


@pytest.fixture(scope='session')
def subset_dir(tmp_path_factory, subset_batches):
    """The real CIFAR-10 subset converted to tfrecords."""
    from datasets import download_and_convert_cifar10 as converter
    path = str(tmp_path_factory.mktemp('subset'))
    converter.run(path, batches_dir=subset_batches)
    return path
