"""Execution: graph mode and sessions, replicas through tf.distribute, the train config, the hook
protocol, method bundles, the training graph and loop, checkpoints, loading weights, evaluation.
May import `runs`, `pruning`, `data`, `files`, `models`, `network` and `core`."""
