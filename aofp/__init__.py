"""AOFP (ICML 2019): the masked multi-path builder, the binary-halving search and its hook, the
presets, the prune pipeline, the driver (`aofp_standalone.py`) and the oracle comparison."""
