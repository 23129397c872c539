"""Process-wide TensorFlow set-up, done by one explicit call in each entry point (drivers, bench,
the tests' conftest): `graph_mode()` imports TensorFlow quietly and switches it to TF1 graph mode;
`session_config` gives the sessions' ConfigProto."""

import warnings

from tf_benchmarks.core.tf_startup import import_tensorflow


def graph_mode():
    """Import TensorFlow without its CPU-only start-up notices and turn TF2 behaviour off (graphs
    and sessions, as the originals ran). Call it before anything imports TensorFlow; later calls
    do nothing more."""
    import_tensorflow()
    import tensorflow.compat.v1 as tf
    tf.logging.set_verbosity(tf.logging.ERROR)
    tf.disable_v2_behavior()
    # Graph-level seeds reach the augmentation ops inside tf.data functions on purpose.
    warnings.filterwarnings('ignore', message='Seed .* from outer graph might be getting used')


def session_config(intra_threads=0, inter_threads=0):
    """ConfigProto with the given thread pools (0 = TensorFlow's choice: one per core)."""
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto(intra_op_parallelism_threads=intra_threads,
                            inter_op_parallelism_threads=inter_threads,
                            allow_soft_placement=True)
    config.gpu_options.allow_growth = True
    return config
