"""Where task data lives: the :class:`Target` base and its local and memory backends."""

from .base import Target
from .local import LocalTarget
from .memory import MemoryStore, MemoryTarget

__all__ = ["LocalTarget", "MemoryStore", "MemoryTarget", "Target"]
