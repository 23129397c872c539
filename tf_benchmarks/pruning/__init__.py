"""Pruning in NumPy, apart from graphs: one surgery for all methods, which model a weight file is,
and the filter scores (L1, |gamma|). May import `files`, `models`, `network` and `core`."""
