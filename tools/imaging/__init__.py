"""Medical images in (DICOM, PNG, JPEG, TIFF), rendered and measured.

::

    img = load_image("ct.dcm")                    # CT in HU, header facts filled
    png = to_png_bytes(render_for_model(img))     # windowed, sized for the model, deterministic bytes
    facts = [image_evidence(img), *measurement_evidence(img, measure_image(img))]
"""

from okaflow._png import png_bytes as to_png_bytes
from okaflow.tools.imaging._dicom import dicom_has_pixel_data
from okaflow.tools.imaging._evidence import image_evidence, measurement_evidence
from okaflow.tools.imaging._load import load_image, load_images, sniff_format
from okaflow.tools.imaging._measure import HU_BANDS, ImageMeasurements, measure_image
from okaflow.tools.imaging._modality import MODALITY_ALIASES, detect_modality, parse_modality
from okaflow.tools.imaging._models import ImageFormat, MedicalImage, SizePolicy, VoiFunction, VoiLut, Window
from okaflow.tools.imaging._policy import fit_to_policy, policy_size, round_to_multiple
from okaflow.tools.imaging._render import frame_index, render_for_model, render_frame, render_montage
from okaflow.tools.imaging._series import ImageSeries, group_series, middle_image
from okaflow.tools.imaging._window import AUTO_PERCENTILES, CT_WINDOW_PRESETS, resolve_window

__all__ = [
    "AUTO_PERCENTILES",
    "CT_WINDOW_PRESETS",
    "HU_BANDS",
    "MODALITY_ALIASES",
    "ImageFormat",
    "ImageMeasurements",
    "ImageSeries",
    "MedicalImage",
    "SizePolicy",
    "VoiFunction",
    "VoiLut",
    "Window",
    "detect_modality",
    "dicom_has_pixel_data",
    "fit_to_policy",
    "frame_index",
    "group_series",
    "image_evidence",
    "load_image",
    "load_images",
    "measure_image",
    "measurement_evidence",
    "middle_image",
    "parse_modality",
    "policy_size",
    "render_for_model",
    "render_frame",
    "render_montage",
    "resolve_window",
    "round_to_multiple",
    "sniff_format",
    "to_png_bytes",
]
