"""Data tools: MATLAB-exact bicubic LR generation, LMDB building, sub-image cropping, no-download photos."""
