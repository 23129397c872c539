"""Training and test data: the CIFAR-10 tfrecords (slim's format) and the tf.data input pipeline
whose position is the global step. May import `files`, `models`, `network` and `core`."""
