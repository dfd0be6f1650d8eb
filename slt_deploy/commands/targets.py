"""`slt-deploy targets`: defined beside export (the registry listing)."""
from .export import targets_command as command

__all__ = ["command"]
