"""okaflow: an agentic clinical-workflow SDK (placeholder surface, filled in below)."""

from okaflow._version import __version__

__all__ = ["__version__"]
