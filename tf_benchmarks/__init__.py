"""tf_cnn_benchmarks-style backbone in TF2 `tf.compat.v1` graph mode, shared by AOFP and C-SGD."""
