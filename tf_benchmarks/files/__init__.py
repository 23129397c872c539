"""Files on disk: writing whole-or-nothing (`atomic`), hdf5 weight files in the originals' keys,
and the restricted unpickler that reads pickles without running code. May import `core` only."""
