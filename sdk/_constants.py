"""Every default okaflow uses, in one place."""

from __future__ import annotations

# Model-input size policy, matching UniMedVL's understanding encoder.
UNDERSTANDING_MAX_SIDE = 980
UNDERSTANDING_MIN_SIDE = 378
UNDERSTANDING_MULTIPLE = 14

# Generation limits for UniMedVL (per side, multiple of).
GENERATION_MAX_SIDE = 1024
GENERATION_MULTIPLE = 16

# Decompression-bomb guard: images over this many pixels (per frame) are refused.
MAX_IMAGE_PIXELS = 20_000_000
# A whole multi-frame object is refused beyond this many pixels in total.
MAX_TOTAL_PIXELS = 400_000_000

# Agent loop.
DEFAULT_MAX_STEPS = 6
DEFAULT_WORKFLOW = "radiology-report"

# Bounds on one structured analysis answer (the response_format schema carries them, so guided
# decoding stops a runaway model instead of running to max_tokens).
ANALYSIS_MAX_CLAIMS = 16
ANALYSIS_MAX_CLAIM_CHARS = 600
ANALYSIS_MAX_CITES = 8
ANALYSIS_MAX_TOOL_CALLS = 4
ANALYSIS_MAX_VISUALS = 4
# Room for a whole bounded answer (16 claims of 600 characters is about 3,000 tokens).
ANALYSIS_MAX_TOKENS = 4096

# Labels.
SYNTHETIC_LABEL = "AI-GENERATED — NOT FOR DIAGNOSIS"
DERIVED_LABEL = "DERIVED — NOT FOR DIAGNOSIS"

# Environment variables read as fallbacks.
ENV_RUNS_DIR = "OKAFLOW_RUNS_DIR"
# How many concurrent arun()s of one event loop compute at once (okaflow._turns); 0: all, in lockstep.
ENV_CPU_SLOTS = "OKAFLOW_CPU_SLOTS"
ENV_MODEL_URL = "OKAFLOW_MODEL_URL"
ENV_MODEL = "OKAFLOW_MODEL"
ENV_API_KEY = "OKAFLOW_API_KEY"
ENV_VLLM_PYTHON = "OKAFLOW_VLLM_PYTHON"

# HTTP model backends: every call is bounded in time. The read timeout covers a whole generation.
HTTP_CONNECT_TIMEOUT_S = 5.0
HTTP_READ_TIMEOUT_S = 120.0
HTTP_WRITE_TIMEOUT_S = 30.0
HTTP_POOL_TIMEOUT_S = 10.0

# Retries (in the HTTP client only): exponential backoff with full jitter, Retry-After honoured up to a cap.
HTTP_MAX_RETRIES = 3
HTTP_BACKOFF_BASE_S = 0.5
HTTP_BACKOFF_CAP_S = 8.0
HTTP_RETRY_AFTER_CAP_S = 60.0

# vLLM servers started by okaflow (`okaflow model serve`, the tests): a 14B model can take minutes to load.
VLLM_READY_TIMEOUT_S = 600.0
VLLM_STOP_TIMEOUT_S = 20.0

DEFAULT_RUNS_DIR = "runs"
# A run directory's manifest file.
RUN_MANIFEST = "run.json"
# The human decision that let a run publish (who, when, note), written before any sink runs.
APPROVAL_FILE = "approval.json"

# Case folder conventions.
CASE_MANIFEST = "case.json"
IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

# PACS and EHR servers (okaflow.tools.ehr, okaflow.tools.pacs, okaflow.pull_case).
ENV_FHIR_URL = "OKAFLOW_FHIR_URL"
ENV_FHIR_TOKEN = "OKAFLOW_FHIR_TOKEN"
ENV_DICOMWEB_URL = "OKAFLOW_DICOMWEB_URL"
ENV_DICOMWEB_TOKEN = "OKAFLOW_DICOMWEB_TOKEN"
# A clinical server answers a read in seconds; a whole-record $everything or a large instance may take longer.
CLINICAL_CONNECT_TIMEOUT_S = 5.0
CLINICAL_READ_TIMEOUT_S = 60.0
# FHIR searches: entries asked for per page, and the most pages followed before a record counts as runaway.
FHIR_PAGE_SIZE = 100
FHIR_MAX_PAGES = 200
# SMART backend services: a client assertion lives at most 5 minutes (the spec's limit); a cached access
# token is renewed this long before it expires (at most half its lifetime).
SMART_ASSERTION_LIFETIME_S = 300
SMART_REFRESH_MARGIN_S = 60.0
# DIMSE (okaflow.tools.pacs.DIMSEClient): the PACS's address and AE title, and ours. A PACS answers an association
# request or a DIMSE message in seconds; the network timeout closes an association left idle; a C-MOVE or a
# study-level C-GET as a whole is bounded by its own deadline (every instance must have arrived by then).
ENV_DIMSE_HOST = "OKAFLOW_DIMSE_HOST"
ENV_DIMSE_PORT = "OKAFLOW_DIMSE_PORT"
ENV_DIMSE_AET = "OKAFLOW_DIMSE_AET"
ENV_DIMSE_CALLING_AET = "OKAFLOW_DIMSE_CALLING_AET"
DIMSE_CALLING_AET = "OKAFLOW"
DIMSE_CONNECT_TIMEOUT_S = 5.0
DIMSE_ACSE_TIMEOUT_S = 30.0
DIMSE_TIMEOUT_S = 60.0
DIMSE_NETWORK_TIMEOUT_S = 60.0
DIMSE_RETRIEVE_DEADLINE_S = 600.0
# pull_case: the most DICOM instances copied into one case (a CT series can hold thousands).
PULL_MAX_INSTANCES = 2000
# Generation tools.
ENV_GENERATION_URL = "OKAFLOW_GENERATION_URL"
ENV_GENERATION_MODEL = "OKAFLOW_GENERATION_MODEL"
# An image endpoint's read timeout covers one whole generation (50 steps at 1024 px can take minutes).
GENERATION_READ_TIMEOUT_S = 600.0
# Images one diffusers call generates at once (a request for more is split into several calls).
GENERATION_MAX_BATCH = 4
# BAGEL's documented sampling defaults (text-to-image / image editing), sent to an image endpoint.
BAGEL_STEPS = 50
BAGEL_TIMESTEP_SHIFT = 3.0
BAGEL_CFG_TEXT_SCALE = 4.0
BAGEL_CFG_IMG_SCALE = 2.0

# okaflow listen (the study service): a DICOM Storage SCP on loopback by default, on the registered DICOM port.
LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 11112
LISTEN_AET = DIMSE_CALLING_AET  # the AE title PACSs already list for okaflow
# A study counts as complete when its sender's association has ended and nothing new arrived for this long.
LISTEN_SETTLE_S = 5.0
# Studies processed at once; attempts per study before it is reported failed; the first retry's delay (doubling).
LISTEN_WORKERS = 2
LISTEN_MAX_ATTEMPTS = 3
LISTEN_RETRY_DELAY_S = 30.0
# The largest instance the SCP accepts (a bigger one is refused with "out of resources", not half-written).
LISTEN_MAX_INSTANCE_BYTES = 2 * 1024**3
# Senders connected at once (each association holds its instance in memory while it arrives).
LISTEN_MAX_ASSOCIATIONS = 16
# Printing a report to PDF with headless Chromium (its executable, else chromium on PATH), bounded in time.
ENV_CHROMIUM = "OKAFLOW_CHROMIUM"
PDF_TIMEOUT_S = 60.0
