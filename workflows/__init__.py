"""Named workflows built from the OKA agent and okaflow's tools."""

from okaflow.workflows._builtin import CLINICAL_VQA, LONGITUDINAL_COMPARISON, RADIOLOGY_REPORT
from okaflow.workflows._workflow import Workflow, get_workflow, list_workflows, register_workflow

__all__ = [
    "CLINICAL_VQA",
    "LONGITUDINAL_COMPARISON",
    "RADIOLOGY_REPORT",
    "Workflow",
    "get_workflow",
    "list_workflows",
    "register_workflow",
]
