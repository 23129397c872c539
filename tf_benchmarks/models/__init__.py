"""The shipped networks as builder calls (vc, dc40, src56/src110) and the model registry
(`registry`: ModelSpec, MODELS, get_model). May import `network` and `core`."""
