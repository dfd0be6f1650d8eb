"""slt-deploy: spiking lottery tickets from training to robots and neuromorphic chips."""

__version__ = "0.1.0"
