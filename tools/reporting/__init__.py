"""The interleaved report and its renderers."""
from okaflow.tools.reporting._model import *  # noqa: F403
