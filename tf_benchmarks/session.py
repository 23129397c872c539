"""Process-wide TensorFlow setup for the drivers: v1 graph mode, quiet start-up and logs, session
config."""

import warnings

from tf_benchmarks.tf_startup import import_tensorflow

import_tensorflow()  # before any other TensorFlow import: without the CPU-only start-up notices

import tensorflow.compat.v1 as tf  # noqa: E402

tf.logging.set_verbosity(tf.logging.ERROR)
tf.disable_v2_behavior()
# Graph-level seeds reach the augmentation ops inside tf.data functions on purpose.
warnings.filterwarnings('ignore', message='Seed .* from outer graph might be getting used')


def session_config(intra_threads=0, inter_threads=0):
    """ConfigProto with the given thread pools (0 = TensorFlow's choice: one per core)."""
    config = tf.ConfigProto(intra_op_parallelism_threads=intra_threads,
                            inter_op_parallelism_threads=inter_threads,
                            allow_soft_placement=True)
    config.gpu_options.allow_growth = True
    return config
