"""Shared fixtures: small data sets converted once per test session."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_benchmarks import session  # noqa: E402,F401  (graph mode for every test)

SUBSET_BATCHES = os.environ.get('CIFAR10_SUBSET_DIR') or os.path.join(
    REPO, '..', 'shared', 'data', 'cifar10-subset', 'cifar-10-batches-py')


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
        pytest.skip('the real CIFAR-10 subset is not available at %s' % SUBSET_BATCHES)
    return SUBSET_BATCHES


@pytest.fixture(scope='session')
def subset_dir(tmp_path_factory, subset_batches):
    """The real CIFAR-10 subset converted to tfrecords."""
    from datasets import download_and_convert_cifar10 as converter
    path = str(tmp_path_factory.mktemp('subset'))
    converter.run(path, batches_dir=subset_batches)
    return path
