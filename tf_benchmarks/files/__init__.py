"""Files on disk: writing whole-or-nothing (`atomic`), hdf5 weight files in the originals' keys,
the restricted unpickler that reads pickles without running code, and PyTorch state dicts read
through it (`torch_checkpoint`). May import `core` only."""
