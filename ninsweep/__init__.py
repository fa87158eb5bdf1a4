"""ninsweep: architecture ablation studies of a Network-in-Network CNN as Ray Tune sweeps."""

__version__ = "0.1.0"
