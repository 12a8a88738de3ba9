"""BubbleReduce: communication- and schedule-aware pipeline partitioning.

Subpackages are imported on demand; see ``docs/architecture.md`` for the map.
"""

__version__ = "0.1.0"
