"""Medical images in (DICOM, PNG, JPEG, TIFF), rendered and measured."""
from okaflow.tools.imaging._models import *  # noqa: F403
