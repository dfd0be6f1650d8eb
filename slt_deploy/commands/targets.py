from .export import targets_command as command  # noqa: F401
