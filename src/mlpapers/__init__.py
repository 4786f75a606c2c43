"""mlpapers: from-scratch ML paper implementations in a reproducible DVC pipeline."""
__version__ = "0.1.0"
