"""argse: long-tailed experts, a gating network and selective prediction (learning to reject)."""

__version__ = "0.1.0"
