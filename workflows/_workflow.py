"""What a workflow is, and the registry that names them.

A :class:`Workflow` is configuration for the OKA agent: which report sections to ask for, the
prompts, which analysis tools to offer, which visual outputs to propose, and whether it needs a
prior study or a question. Define your own by constructing one (or ``dataclasses.replace`` on a
built-in) and pass it to :func:`okaflow.run`, or register it to use its name from the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from okaflow._errors import ConfigurationError
from okaflow.model_backend import Section

if TYPE_CHECKING:
    from okaflow._case import Case

__all__ = ["Workflow", "get_workflow", "list_workflows", "register_workflow"]

VisualPlanner = Callable[["Case"], list[dict[str, Any]]]


def _no_visuals(case: Case) -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class Workflow:
    """A named configuration of the OKA agent.

    Attributes:
        name: The id used on the CLI (``--workflow NAME``).
        title: The report title.
        sections: Report sections the analysis must fill, in order.
        system_prompt: The system message for a model backend.
        instructions: Appended to the user message after the evidence table.
        default_task: Used when the case has no task of its own.
        tools: Names of the analysis tools offered to the model.
        visuals: Proposes visual outputs for a case (``[{task, image_ids, params, reason}]``).
        needs_prior: Refuse cases with nothing to compare against: no prior image and no prior report.
        needs_question: Refuse cases without a task/question.
        frames: How multi-frame images are shown to the model: the middle frame or a montage.
        knowledge_query: Query for the knowledge step (defaults to the task).
    """

    name: str
    title: str
    sections: tuple[Section, ...]
    system_prompt: str
    instructions: str
    default_task: str
    tools: tuple[str, ...] = ("measure_image", "observation_trend", "retrieve_knowledge")
    visuals: VisualPlanner = _no_visuals
    needs_prior: bool = False
    needs_question: bool = False
    frames: Literal["middle", "montage"] = "middle"
    knowledge_query: str | None = None
    description: str = ""

    def check(self, case: Case) -> None:
        """Raise a ConfigurationError naming what the case lacks for this workflow."""
        # Prior images are often not retrieved in practice; a prior report is still something to compare with.
        if self.needs_prior and not (case.current_images and (case.prior_images or case.patient.reports)):
            raise ConfigurationError(
                f"workflow {self.name!r} needs a current image and a prior (an image or a report); case "
                f"{case.id!r} has {len(case.current_images)} current, {len(case.prior_images)} prior images and "
                f"{len(case.patient.reports)} reports",
                hint='mark images with "role": "prior" / "current" in case.json, or pick another workflow',
            )
        if self.needs_question and not case.task:
            raise ConfigurationError(
                f"workflow {self.name!r} needs a question", hint="set 'task' in case.json or pass --task"
            )


_REGISTRY: dict[str, Workflow] = {}


def register_workflow(workflow: Workflow, *, replace: bool = False) -> Workflow:
    """Make a workflow available by name (CLI ``--workflow NAME``)."""
    if workflow.name in _REGISTRY and not replace:
        raise ConfigurationError(f"a workflow named {workflow.name!r} exists", hint="pass replace=True")
    _REGISTRY[workflow.name] = workflow
    return workflow


def list_workflows() -> list[Workflow]:
    """Every registered workflow, by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def get_workflow(spec: str | Workflow) -> Workflow:
    """A workflow by name, or ``module:attribute`` for one defined outside okaflow."""
    if isinstance(spec, Workflow):
        return spec
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"cannot load workflow {spec!r}: {exc}") from None
        if not isinstance(found, Workflow):
            raise ConfigurationError(f"{spec!r} is a {type(found).__name__}, not an okaflow Workflow")
        return found
    raise ConfigurationError(f"no workflow named {spec!r}", hint=f"choose from {sorted(_REGISTRY)} or pass module:attr")
