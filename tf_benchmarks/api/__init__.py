"""The Python API beside the two command lines (docs/own-network.md): load a network (a shipped
name, a .py file, a .json or .hdf5 description) and read its description, channel groups and
FLOPs in-process; train, prune, evaluate and export by running the drivers' own commands."""

from tf_benchmarks.api.calls import (RunResult, evaluate, export, load_network,  # noqa: F401
                                     network_description, prune, run, summary, train)
