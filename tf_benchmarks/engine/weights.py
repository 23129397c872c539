"""Weights between graphs and arrays: the key variables a trace saves, loading name -> array dicts
into a session with one run, and the digest of a set of weights."""

import hashlib

import numpy as np
import tensorflow.compat.v1 as tf

from tf_benchmarks.files import hdf5_io
from tf_benchmarks.network.convnet_builder import variable_name


def weights_digest(weights):
    """sha256 over the names and bytes of weights (name -> array)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(weights[name]).tobytes())
    return h.hexdigest()


def key_variables(trace):
    """The variables saved to hdf5 (trainable ones and BN moving statistics), in creation order."""
    by_name = {variable_name(v): v for v in tf.global_variables()}
    return {name: by_name[name] for name in trace.variables}


def load_weights(session, variables, weights, source, allow_missing=False, allow_unexpected=True):
    """Assign `weights` (name -> array) to `variables` (name -> tf.Variable) by normalized name.

    Raises a UserError on a shape mismatch, on missing variables unless allow_missing, and on
    entries the model does not have unless allow_unexpected.
    """
    shapes = {name: tuple(var.shape.as_list()) for name, var in variables.items()}
    assignments, report = hdf5_io.match_weights(shapes, weights)
    hdf5_io.check_report(report, source, allow_missing, allow_unexpected)
    assign = loaders(session.graph, variables)
    session.run([assign[name][1] for name in assignments],
                {assign[name][0]: value for name, value in assignments.items()})
    return report


def loaders(graph, variables):
    """{name: (placeholder, assign op)} for `variables`, made once per graph: one session.run loads
    every weight (Variable.load would run the graph once per variable)."""
    cache = graph.get_collection_ref('pruning_weight_loaders')
    if not cache:
        cache.append({})
    made = cache[0]
    with graph.as_default():
        for name, var in variables.items():
            if name not in made:
                value = tf.placeholder(var.dtype.base_dtype, var.shape)
                made[name] = (value, tf.assign(var, value))
    return made
