"""tf_cnn_benchmarks-style backbone in TF2 `tf.compat.v1` graph mode, shared by AOFP and C-SGD.

Subpackages by role; a package imports only those below it in this list (tests/test_layering.py
checks it): commands, deploy, engine, runs / pruning / data, files / models, network, core.
"""
