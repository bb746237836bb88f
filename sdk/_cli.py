"""The ``okaflow`` command line.

Exit codes (stable, for scripts and schedulers):

====  =====================================================================
0     success (``run``: report written; ``inspect``: case loads)
1     an unexpected okaflow error (AgentError, RunDirectoryError, ...)
2     usage error (bad arguments)
3     input error: the case, bundle or an image cannot be used
4     backend error: the model or generation backend failed
5     the run is paused, waiting for approval (``okaflow approve``)
6     configuration error (unknown workflow/backend, missing extra)
7     ``replay``: the replayed report differs from the recorded one; ``diff``: the runs differ
8     ``replay``/``resume``: refused — inputs or okaflow version changed, or an unrecorded call was asked
9     ``batch``: finished, but some cases failed (listed; run the same batch again to retry them)
10    a PACS or EHR failed, refused or was unreachable, or a report could not be published to it
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from okaflow._cli_listen import add_listen_parser, listen_command
from okaflow._cli_pull import add_pull_parser, pull_command
from okaflow._cli_sinks import add_sink_flags, sinks_from_flags
from okaflow._constants import DEFAULT_MAX_STEPS, VLLM_READY_TIMEOUT_S
from okaflow._errors import (
    BackendError,
    ClinicalSystemError,
    ConfigurationError,
    InputError,
    OkaflowError,
    PublishError,
    ReplayError,
)
from okaflow._version import __version__

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {
    "ok": 0,
    "error": 1,
    "usage": 2,
    "input": 3,
    "backend": 4,
    "awaiting_approval": 5,
    "config": 6,
    "differs": 7,
    "replay_refused": 8,
    "batch_failures": 9,
    "clinical": 10,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="okaflow", description="Agentic clinical workflows over FHIR + images.")
    p.add_argument("--version", action="version", version=f"okaflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a workflow over a case and write an interleaved report")
    r.add_argument("case", help="case folder, case.json, or FHIR bundle")
    r.add_argument("--out", help="run directory (default: runs/<case>-<time>-<id>)")
    r.add_argument("--workflow", help="workflow name or module:attr (default: the case's, else radiology-report)")
    _add_backend_flags(r, "evidence-only")
    _add_generator_flags(r)
    r.add_argument("--task", help="the clinical question/task (overrides case.json)")
    r.add_argument("--force", action="store_true", help="replace --out if it already holds a run")
    add_sink_flags(r)
    r.add_argument("--yes", action="store_true", help="approve publishing without asking (unattended pipelines)")
    r.add_argument(
        "--max-steps", type=int, default=DEFAULT_MAX_STEPS, help=f"cap on analyze calls (default {DEFAULT_MAX_STEPS})"
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--lenient", action="store_true", help="skip invalid FHIR entries (listed as warnings)")
    r.add_argument("--quiet", action="store_true", help="no progress display")
    r.add_argument("--json", action="store_true", help="print the result as JSON")

    i = sub.add_parser("inspect", help="show what okaflow ingests from a case, with warnings")
    i.add_argument("case")
    i.add_argument("--lenient", action="store_true", help="skip invalid FHIR entries (listed as warnings)")
    i.add_argument("--json", action="store_true")

    a = sub.add_parser("approve", help="answer a run waiting for approval")
    a.add_argument("run_dir")
    a.add_argument("case", help="the same case the run was started with")
    decision = a.add_mutually_exclusive_group(required=True)
    decision.add_argument("--yes", action="store_true")
    decision.add_argument("--no", action="store_true")
    a.add_argument("--by", help="who decides (recorded in the run)")
    a.add_argument("--note")
    add_sink_flags(a, again=True)

    b = sub.add_parser("batch", help="run many cases concurrently, with progress and a summary (resumable)")
    b.add_argument("cases", nargs="+", help="case folders, case.json files or bundles")
    b.add_argument("--out", required=True, help="batch folder: one run per case + summary.csv/json + index.html")
    b.add_argument("--concurrency", type=int, default=4, help="cases in flight at once (default 4)")
    _add_backend_flags(b, "evidence-only")
    _add_generator_flags(b)
    b.add_argument("--workflow", help="workflow for every case (default: each case's own)")
    b.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print the outcomes as JSON")

    rs = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint, in place")
    rs.add_argument("run_dir")
    _add_backend_flags(rs, None)
    _add_generator_flags(rs)
    rs.add_argument("--case", help="where the run's case now lives (default: the recorded path)")
    rs.add_argument("--lenient", action="store_true", help="load the case leniently, as the original run did")
    add_sink_flags(rs, again=True)
    rs.add_argument("--quiet", action="store_true", help="no progress display")
    rs.add_argument("--json", action="store_true", help="print the result as JSON")

    rp = sub.add_parser("replay", help="re-execute a recorded run from its record (no model server needed)")
    rp.add_argument("run_dir")
    rp.add_argument("--out", help="the replay's run directory (default: RUN-replay beside it)")
    rp.add_argument("--case", help="where the run's case now lives (default: the recorded path)")
    rp.add_argument("--force", action="store_true", help="replace --out if it already holds a run")
    rp.add_argument("--lenient", action="store_true", help="load the case leniently, as the original run did")
    rp.add_argument("--json", action="store_true", help="print the result as JSON")

    rr = sub.add_parser("rerun", help="fork a run from a checkpoint into a new run, with another backend or settings")
    rr.add_argument("run_dir")
    rr.add_argument("--from", dest="from_step", type=int, default=1, metavar="STEP", help="analysis step to redo first")
    rr.add_argument("--out", help="the new run directory (default: RUN-from-STEP beside it)")
    rr.add_argument("--force", action="store_true", help="replace --out if it already holds a run")
    _add_backend_flags(rr, None)
    _add_generator_flags(rr)
    rr.add_argument("--max-steps", type=int, help="override the run's step cap")
    rr.add_argument("--seed", type=int, help="override the run's seed")
    rr.add_argument("--case", help="where the run's case now lives (default: the recorded path)")
    rr.add_argument("--lenient", action="store_true", help="load the case leniently, as the original run did")
    rr.add_argument("--quiet", action="store_true", help="no progress display")
    rr.add_argument("--json", action="store_true", help="print the result as JSON")

    ex = sub.add_parser("export", help="write a run and its case inputs into one portable zip")
    ex.add_argument("run_dir")
    ex.add_argument("--out", required=True, help="the zip to write, e.g. case.zip")
    ex.add_argument(
        "--deidentify",
        action="store_true",
        help="share a de-identified case (DICOM PS3.15 basic profile, FHIR pseudonyms, dates shifted), "
        "the run recorded again over it",
    )
    ex.add_argument(
        "--key-file",
        help="file holding the pseudonym key, to export several runs of the same patients consistently "
        "(default: a random key, forgotten)",
    )
    ex.add_argument("--date-shift-days", type=int, help="days every date moves (default: 30-365 back, from the key)")
    ex.add_argument("--lenient", action="store_true", help="load the case leniently, as the original run did")
    im = sub.add_parser("import", help="unpack an exported zip into a folder, ready to replay")
    im.add_argument("bundle", help="the zip okaflow export wrote")
    im.add_argument("--to", required=True, help="an empty folder to unpack into (run/ and case/)")

    d = sub.add_parser("diff", help="compare two runs: setup, each analysis step, citations, images, report text")
    d.add_argument("run_a")
    d.add_argument("run_b")
    d.add_argument("--html", help="also write the comparison as an HTML page here")
    d.add_argument("--json", action="store_true", help="print the comparison as JSON")

    sub.add_parser("workflows", help="list the registered workflows")
    add_listen_parser(sub, _add_backend_flags, _add_generator_flags)
    add_pull_parser(sub)

    m = sub.add_parser("model", help="serve a model with vLLM, or check a model server")
    msub = m.add_subparsers(dest="model_command", required=True)
    s = msub.add_parser(
        "serve",
        help="start a vLLM OpenAI server for a local model and wait (Ctrl-C stops it)",
        epilog="Flags after -- go to vLLM unchanged, e.g. okaflow model serve DIR --port 9000 -- --swap-space 8",
    )
    s.add_argument("model_dir", help="local model folder (config.json, weights, tokenizer)")
    s.add_argument("--name", help="served model name (default: the folder name), e.g. unimedvl")
    s.add_argument("--python", help="interpreter with vllm installed ($OKAFLOW_VLLM_PYTHON, else python3)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32 (float32 on CPU)")
    s.add_argument("--max-model-len", type=int, default=8192)
    s.add_argument("--max-images-per-request", type=int, metavar="N", help="vLLM --limit-mm-per-prompt image:N")
    s.add_argument("--chat-template", metavar="FILE|unimedvl", help="pin the server's chat template")
    s.add_argument("--log", help="server log file (default: a temporary file, printed)")
    s.add_argument(
        "--cpus", metavar="LIST", help="run the server on these CPUs only, e.g. 0-3,8 (keeps the rest for okaflow)"
    )
    s.add_argument("--ready-timeout", type=float, default=VLLM_READY_TIMEOUT_S, help="seconds to wait for readiness")
    c = msub.add_parser("check", help="check that a model server is up and serves the model")
    c.add_argument("--model-url", help="base URL, e.g. http://gpu-host:8000/v1 ($OKAFLOW_MODEL_URL)")
    c.add_argument("--model", help="served model name ($OKAFLOW_MODEL)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" goes to the program okaflow starts (vLLM for `model serve`), untouched;
    # options before it are okaflow's wherever they stand (before or after the model folder).
    cut = given.index("--") if "--" in given else len(given)
    parser = _parser()
    args = parser.parse_args(given[:cut])
    args.extra = given[cut + 1 :]
    if args.extra and (args.command, getattr(args, "model_command", None)) != ("model", "serve"):
        parser.error(f"only `okaflow model serve` passes flags after --, not `okaflow {args.command}`")
    # soft_wrap: never break paths and error messages across lines (they are grepped and copied).
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    try:
        if args.command == "run":
            return _run(args, out, err)
        if args.command == "inspect":
            return _inspect(args, out)
        if args.command == "approve":
            return _approve(args, out)
        if args.command == "listen":
            return listen_command(args, out, err)
        if args.command == "pull":
            return pull_command(args, out)
        if args.command == "model":
            return _model(args, out, err)
        if args.command == "replay":
            return _replay(args, out, err)
        if args.command == "resume":
            return _resume(args, out, err)
        if args.command == "batch":
            return _batch(args, out, err)
        if args.command == "diff":
            return _diff(args, out)
        if args.command == "rerun":
            return _rerun(args, out, err)
        if args.command == "export":
            from okaflow._export import export_run

            if not args.deidentify and (args.key_file or args.date_shift_days is not None):
                raise ConfigurationError("--key-file and --date-shift-days only apply with --deidentify")
            if args.key_file and not Path(args.key_file).is_file():
                raise ConfigurationError(f"--key-file {args.key_file} does not exist")
            key = Path(args.key_file).read_bytes().strip() if args.key_file else None
            written = export_run(
                args.run_dir,
                args.out,
                deidentify=args.deidentify,
                key=key,
                date_shift_days=args.date_shift_days,
                strict=not args.lenient,
            )
            what = "de-identified case of " if args.deidentify else ""
            out.print(f"exported {what}{args.run_dir} → {written}", highlight=False)
            return EXIT_CODES["ok"]
        if args.command == "import":
            from okaflow._export import import_run

            run_dir = import_run(args.bundle, args.to)
            out.print(f"imported {args.bundle} → {run_dir}  (okaflow replay {run_dir})", highlight=False)
            return EXIT_CODES["ok"]
        return _workflows(out)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        return 130
    except _UsageError as exc:
        err.print(str(exc), highlight=False)
        return EXIT_CODES["usage"]
    except ReplayError as exc:
        return _fail(err, exc, "replay_refused")
    except InputError as exc:
        return _fail(err, exc, "input")
    except BackendError as exc:
        return _fail(err, exc, "backend")
    except ConfigurationError as exc:
        return _fail(err, exc, "config")
    except (ClinicalSystemError, PublishError) as exc:
        return _fail(err, exc, "clinical")
    except OkaflowError as exc:
        return _fail(err, exc, "error")


def _fail(err: Console, exc: OkaflowError, kind: str) -> int:
    err.print(f"[bold red]error[/bold red] ({type(exc).__name__}): {exc.message}", highlight=False)
    if exc.hint:
        err.print(f"[yellow]fix:[/yellow] {exc.hint}", highlight=False)
    return EXIT_CODES[kind]


class _Progress:
    """Prints one line per agent step with its elapsed time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last = time.perf_counter()

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        ms = (now - self.last) * 1000
        self.last = now
        self.console.print(f"  [green]✓[/green] {event['node']:<9} {ms:7.1f} ms  {event['summary']}", highlight=False)


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from okaflow._case import Case

    if args.max_steps < 1:
        err.print("--max-steps must be at least 1")
        return EXIT_CODES["usage"]
    show = not (args.quiet or args.json)
    if show:
        out.print(f"[bold]okaflow {__version__}[/bold] running [cyan]{args.case}[/cyan]")

    with contextlib.ExitStack() as stack:
        # Flags that can be refused are checked before a model is loaded.
        sinks = sinks_from_flags(args, stack)
        backend, generator = _backend_and_generator(args, stack, backend_required=True)
        case = Case.load(args.case, strict=not args.lenient)
        result = _run_case(case, backend, generator, sinks, args, out, show)
    return _report_result(result, args.json, out)


def _backend(args: argparse.Namespace, stack: contextlib.ExitStack[Any] | None) -> Any:
    """The backend the flags ask for: an instance, a spec string for ``resolve_backend``, or ``None`` if unusable.

    With a ``stack`` an OpenAI-compatible server gets the sync client, closed with the stack; without
    one, the async client, which the caller closes in its event loop.
    """
    if args.backend == "openai":
        from okaflow.model_backend import AsyncOpenAIBackend, OpenAIBackend

        # The API key is read from $OKAFLOW_API_KEY only: secrets do not belong on a command line.
        options = {
            "base_url": args.model_url,
            "model": args.model,
            "max_images_per_request": args.max_images_per_request,
            "chat_template": _chat_template(args.chat_template),
        }
        if stack is None:
            return AsyncOpenAIBackend(**options)
        return stack.enter_context(OpenAIBackend(**options))
    if args.backend == "transformers":
        from okaflow.model_backend import TransformersBackend

        if not args.model:
            return None
        return TransformersBackend(
            args.model,
            device=args.device,
            dtype=args.dtype,
            chat_template=_chat_template(args.chat_template),
            max_images_per_request=args.max_images_per_request,
        )
    if args.model_url or args.model or args.max_images_per_request or args.chat_template:
        return None
    return args.backend


class _UsageError(Exception):
    """Flags that do not fit together: printed as is, exit code ``usage``."""


def _backend_and_generator(
    args: argparse.Namespace, stack: contextlib.ExitStack[Any], *, backend_required: bool, async_backend: bool = False
) -> tuple[Any, Any]:
    """The backend and ``generator=`` option the flags ask for; the clients they open close with ``stack``.

    ``backend_required=False`` (resume, rerun): no backend flags means "rebuild the recorded one" (``None``),
    and no generator flags likewise (``...``); a new run gets the classical generator (``"default"``).
    ``async_backend``: an OpenAI-compatible server gets the async client, which the caller closes in its loop.

    Raises:
        _UsageError: The backend or generator flags do not fit together (checked before anything is loaded).
    """
    _check_generator_flags(args)
    backend = _backend(args, None if async_backend else stack)
    if backend is None and (backend_required or args.backend is not None or args.model_url or args.model):
        if args.backend == "transformers":
            raise _UsageError("--backend transformers needs --model DIR (a local model folder)")
        raise _UsageError(
            "--model-url, --model, --max-images-per-request and --chat-template apply to "
            "--backend openai or transformers"
        )
    generator = _generator(args, stack)
    return backend, "default" if generator is ... and backend_required else generator


def _check_generator_flags(args: argparse.Namespace) -> None:
    """The generation flags' combinations, refused before a backend or a pipeline is loaded."""
    kind = args.generator
    model_flags = args.generation_model or args.generation_url or args.generation_steps
    if kind not in ("diffusers", "endpoint") and model_flags:
        raise _UsageError(
            "--generation-model, --generation-url and --generation-steps need --generator diffusers|endpoint"
        )
    if kind == "diffusers" and not args.generation_model:
        raise _UsageError("--generator diffusers needs --generation-model DIR (a local pipeline folder)")
    if kind == "endpoint" and args.generation_steps:
        raise _UsageError("--generation-steps applies to --generator diffusers (send steps per request to an endpoint)")
    if kind not in (None, "classical", "none", "diffusers", "endpoint") and ":" not in kind:
        raise _UsageError(f"unknown --generator {kind!r}: use classical, diffusers, endpoint, none or module:factory")


def _add_backend_flags(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--backend",
        default=default,
        help="understanding backend: evidence-only, openai (OpenAI-compatible server, e.g. vLLM), "
        "transformers (a local model folder, in process) or module:factory",
    )
    p.add_argument("--model-url", help="openai backend: base URL, e.g. http://gpu-host:8000/v1 ($OKAFLOW_MODEL_URL)")
    p.add_argument(
        "--model",
        help="openai: served model name, e.g. unimedvl ($OKAFLOW_MODEL); transformers: the local model folder",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="transformers backend and diffusers generator: cpu, cuda, cuda:1, mps (default cpu)",
    )
    p.add_argument(
        "--dtype", default="float32", help="transformers backend and diffusers generator: float32, bfloat16, float16"
    )
    p.add_argument(
        "--max-images-per-request",
        type=int,
        metavar="N",
        help="openai backend: the server's per-prompt image limit; the agent sends images in batches of N",
    )
    p.add_argument(
        "--chat-template",
        metavar="FILE|unimedvl",
        help="openai backend: send this chat template with each request ('unimedvl': the role-less template)",
    )


def _add_generator_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--generator",
        help="generation tool for visual outputs: classical (the default for new runs: no model), diffusers (a "
        "local pipeline folder, in process), endpoint (an OpenAI-style image endpoint such as vllm-omni), none, "
        "or module:factory; diffusers and endpoint leave windows, montages and comparisons to the classical one",
    )
    p.add_argument(
        "--generation-model",
        metavar="DIR|NAME",
        help="diffusers: the pipeline folder; endpoint: the served model name ($OKAFLOW_GENERATION_MODEL)",
    )
    p.add_argument(
        "--generation-url", help="endpoint generator: base URL, e.g. http://gpu-host:8000/v1 ($OKAFLOW_GENERATION_URL)"
    )
    p.add_argument(
        "--generation-api",
        choices=("images", "chat"),
        default="images",
        help="endpoint generator: /v1/images/generations + /edits (default) or chat completions",
    )
    p.add_argument(
        "--generation-steps", type=int, metavar="N", help="diffusers: denoising steps when a request sets none"
    )


def _generator(args: argparse.Namespace, stack: contextlib.ExitStack[Any]) -> Any:
    """The ``generator=`` option the flags ask for.

    ``"default"`` is the classical generator; ``...`` means no ``--generator`` was given (new runs then use
    the classical one; resume and rerun rebuild the recorded one). The flags were checked before, by
    ``_check_generator_flags``.
    """
    kind = args.generator
    if kind is None or kind == "classical":
        return "default" if kind else ...
    if kind == "none":
        return None
    from okaflow.tools.generation import ClassicalGenerator, GeneratorChain

    if kind == "diffusers":
        from okaflow.tools.generation import DiffusersGenerator

        model = DiffusersGenerator(
            args.generation_model, device=args.device, dtype=args.dtype, steps=args.generation_steps
        )
        return GeneratorChain(model, ClassicalGenerator())
    if kind == "endpoint":
        from okaflow.tools.generation import ImageEndpointGenerator

        endpoint = ImageEndpointGenerator(
            base_url=args.generation_url, model=args.generation_model, api=args.generation_api
        )
        stack.enter_context(endpoint)
        return GeneratorChain(endpoint, ClassicalGenerator())
    if ":" in kind:
        from okaflow._run import _generator as resolve_generator

        return resolve_generator(kind)
    raise AssertionError(f"unchecked --generator {kind!r}")  # pragma: no cover (_check_generator_flags)


def _generator_option(generator: Any) -> dict[str, Any]:
    """``generator=`` for resume/rerun, only when the flags named one (otherwise the recorded one is rebuilt)."""
    return {} if generator is ... else {"generator": generator}


def _resume(args: argparse.Namespace, out: Console, err: Console) -> int:
    from okaflow._resume import resume

    with contextlib.ExitStack() as stack:
        sinks = sinks_from_flags(args, stack)  # before a model is loaded: these flags can be refused
        backend, generator = _backend_and_generator(args, stack, backend_required=False)
        show = not (args.quiet or args.json)
        result = resume(
            args.run_dir,
            backend=backend,
            **_generator_option(generator),
            case=args.case,
            strict=not args.lenient,
            sinks=sinks,
            on_event=_Progress(out) if show else None,
        )
    return _report_result(result, args.json, out)


def _batch(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.concurrency < 1 or args.max_steps < 1:
        err.print("--concurrency and --max-steps must be at least 1")
        return EXIT_CODES["usage"]
    # The generator's clients close with the stack; the backend is an async client, closed in its event loop.
    with contextlib.ExitStack() as stack:
        backend, generator = _backend_and_generator(args, stack, backend_required=True, async_backend=True)
        result = _batch_run(args, out, backend, generator)
    return _batch_report(args, out, result)


def _batch_run(args: argparse.Namespace, out: Console, backend: Any, generator: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from okaflow._batch import abatch, run_coroutine

    show = not (args.quiet or args.json)
    progress = Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=out,
        disable=not show,
    )

    async def go() -> Any:
        try:
            with progress:
                task = progress.add_task("", total=len(args.cases))

                def advance(outcome: Any, finished: int, total: int) -> None:
                    progress.update(task, completed=finished, description=f"{outcome.status}: {outcome.case}")

                return await abatch(
                    args.cases,
                    out=args.out,
                    concurrency=args.concurrency,
                    backend=backend,
                    on_progress=advance,
                    workflow=args.workflow,
                    max_steps=args.max_steps,
                    seed=args.seed,
                    generator=generator,
                )
        finally:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    return run_coroutine(go)


def _batch_report(args: argparse.Namespace, out: Console, result: Any) -> int:
    import dataclasses

    if args.json:
        out.print_json(json.dumps([dataclasses.asdict(o) for o in result.outcomes]))
    else:
        table = Table("case", "status", "seconds", "flagged", "reason / report")
        for o in result.outcomes:
            colour = {"failed": "red", "kept": "dim"}.get(o.status, "green")
            table.add_row(
                o.case,
                f"[{colour}]{o.status}[/{colour}]",
                f"{o.seconds:.1f}",
                str(o.flagged_claims),
                o.reason or o.report or "",
            )
        out.print(table)
        out.print(f"summary: {result.summary_csv}  index: {result.index_html}", highlight=False)
    return EXIT_CODES["batch_failures" if result.failed else "ok"]


def _rerun(args: argparse.Namespace, out: Console, err: Console) -> int:
    from okaflow._rerun import rerun

    with contextlib.ExitStack() as stack:
        backend, generator = _backend_and_generator(args, stack, backend_required=False)
        show = not (args.quiet or args.json)
        result = rerun(
            args.run_dir,
            **_generator_option(generator),
            from_step=args.from_step,
            out=args.out,
            force=args.force,
            backend=backend,
            case=args.case,
            strict=not args.lenient,
            max_steps=args.max_steps,
            seed=args.seed,
            on_event=_Progress(out) if show else None,
        )
    return _report_result(result, args.json, out)


def _diff(args: argparse.Namespace, out: Console) -> int:
    import dataclasses

    from okaflow._diff import diff_runs

    result = diff_runs(args.run_a, args.run_b)
    if args.html:
        Path(args.html).write_text(result.to_html(), encoding="utf-8")
    if args.json:
        data = dataclasses.asdict(result)
        out.print_json(json.dumps({**data, "a": str(result.a), "b": str(result.b), "identical": result.identical}))
    else:
        out.print(result.to_text(), highlight=False, markup=False)
    return EXIT_CODES["ok" if result.identical else "differs"]


def _replay(args: argparse.Namespace, out: Console, err: Console) -> int:
    from okaflow._replay import replay

    result = replay(args.run_dir, out=args.out, case=args.case, force=args.force, strict=not args.lenient)
    if args.json:
        out.print_json(
            json.dumps(
                {
                    "identical": result.identical,
                    "differing": result.differing,
                    "replay_dir": str(result.run.run_dir),
                    "unused_model_calls": result.unused_model_calls,
                }
            )
        )
    elif result.identical:
        out.print(f"[green]identical[/green]: {result.run.run_dir} reproduces {result.original} byte for byte")
    else:
        err.print(f"[red]differs[/red]: {', '.join(result.differing)} of {result.run.run_dir} differ from the record")
    if result.unused_model_calls:
        err.print(f"note: {result.unused_model_calls} recorded model call(s) were not asked for", highlight=False)
    return EXIT_CODES["ok" if result.identical else "differs"]


def _chat_template(value: str | None) -> str | None:
    """``unimedvl`` → okaflow's role-less template; otherwise a template file's text."""
    if value is None:
        return None
    if value == "unimedvl":
        from okaflow.model_backend import UNIMEDVL_CHAT_TEMPLATE

        return UNIMEDVL_CHAT_TEMPLATE
    path = Path(value)
    if not path.is_file():
        raise ConfigurationError(f"chat template {value!r} is neither 'unimedvl' nor a file")
    return path.read_text(encoding="utf-8")


def _cpu_list(text: str) -> list[int]:
    """``0-3,8`` as ``[0, 1, 2, 3, 8]`` (the notation of taskset and /proc/cpuinfo)."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            start, stop = int(first), int(last) if dash else int(first)  # "3-" is a typo, not CPU 3
            if stop < start:
                raise ValueError(part)  # 8-3 is a typo, not the empty range
            cpus += range(start, stop + 1)
    except ValueError:
        raise ConfigurationError(f"--cpus {text!r} is not a CPU list", hint="write it like 0-3,8") from None
    return cpus


def _model(args: argparse.Namespace, out: Console, err: Console) -> int:
    from okaflow.model_backend import OpenAIBackend, VLLMServer

    if args.model_command == "check":
        with OpenAIBackend(base_url=args.model_url, model=args.model, max_retries=0) as backend:
            served = backend.check_ready()
        out.print(f"{backend.base_url} is up and serves {served}", highlight=False)
        return EXIT_CODES["ok"]
    server = VLLMServer(
        model=args.model_dir,
        served_model_name=args.name,
        python=args.python,
        host=args.host,
        port=args.port,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        limit_mm_per_prompt={"image": args.max_images_per_request} if args.max_images_per_request else None,
        chat_template=_chat_template(args.chat_template),
        extra_args=args.extra,
        log_path=Path(args.log) if args.log else None,
        cpus=_cpu_list(args.cpus) if args.cpus else None,
        ready_timeout_s=args.ready_timeout,
    )
    out.print(f"starting vLLM for {args.model_dir} on {args.host}:{args.port} …", highlight=False)
    with server:
        out.print(f"[green]ready[/green]: {server.base_url} serves {server.name!r} (log: {server.log_path})")
        out.print(
            f"  okaflow run CASE --backend openai --model-url {server.base_url} --model {server.name}"
            + (f" --max-images-per-request {args.max_images_per_request}" if args.max_images_per_request else ""),
            highlight=False,
        )
        out.print("  Ctrl-C stops the server.", highlight=False)
        while server.running:
            time.sleep(0.5)
    err.print(f"the vLLM server exited; log: {server.log_path}\n{server.log_tail()}", highlight=False)
    return EXIT_CODES["backend"]


def _run_case(
    case: Any, backend: Any, generator: Any, sinks: list[Any], args: argparse.Namespace, out: Console, show: bool
) -> Any:
    from okaflow._run import run

    return run(
        case,
        workflow=args.workflow,
        backend=backend,
        out=args.out,
        task=args.task,
        force=args.force,
        on_event=_Progress(out) if show else None,
        sinks=sinks,
        require_approval=not args.yes,
        max_steps=args.max_steps,
        seed=args.seed,
        generator=generator,
    )


def _report_result(result: Any, as_json: bool, out: Console) -> int:
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "status": result.status,
                    "run_dir": str(result.run_dir),
                    "reports": {k: str(v) for k, v in result.report_paths.items()},
                    "warnings": result.warnings,
                    "flagged_claims": len(result.flagged_claims),
                    "published": result.state.get("published", []),
                }
            )
        )
    else:
        for w in result.warnings:
            out.print(f"  [yellow]warning[/yellow] {w}", highlight=False)
        for kind, path in result.report_paths.items():
            out.print(f"  report ({kind}): {path}", highlight=False)
        for dest in result.state.get("published", []):
            out.print(f"  published: {dest}", highlight=False)
        if result.status == "awaiting_approval":
            out.print(
                f"[yellow]waiting for approval[/yellow]: okaflow approve {result.run_dir} CASE --yes|--no "
                "(with the run's --publish-dir/--push-* flags)",
                highlight=False,
            )
    return EXIT_CODES["awaiting_approval"] if result.status == "awaiting_approval" else 0


def _approve(args: argparse.Namespace, out: Console) -> int:
    from okaflow._run import approve

    with contextlib.ExitStack() as stack:
        result = approve(
            args.run_dir,
            args.case,
            approved=bool(args.yes),
            by=args.by,
            note=args.note,
            sinks=sinks_from_flags(args, stack),
        )
    return _report_result(result, False, out)


def _inspect(args: argparse.Namespace, out: Console) -> int:
    from okaflow._case import Case

    case = Case.load(args.case, strict=not args.lenient)
    p = case.patient
    summary: dict[str, Any] = {
        "case": case.id,
        "title": case.title,
        "task": case.task,
        "workflow": case.workflow,
        "fhir_version": p.fhir_version,
        "patient": p.patient.id if p.patient else None,
        "counts": {
            "conditions": len(p.conditions),
            "medications": len(p.medications),
            "allergies": len(p.allergies),
            "procedures": len(p.procedures),
            "encounters": len(p.encounters),
            "observations": len(p.observations),
            "imaging_studies": len(p.imaging_studies),
            "reports": len(p.reports),
            "evidence_rows": len(case.evidence()),
        },
        "images": [
            {
                "id": i.id,
                "role": case.roles.get(i.id),
                "modality": i.modality.value,
                "modality_source": i.modality_source,
                "size": f"{i.columns}x{i.rows}",
                "frames": i.frames,
                "study_uid": i.study_uid,
                "study_date": i.study_date,
            }
            for i in case.images
        ],
        "warnings": case.warnings,
    }
    if args.json:
        out.print_json(json.dumps(summary))
        return 0
    out.print(f"[bold]{case.id}[/bold] {case.title or ''}  (FHIR {p.fhir_version}, patient {summary['patient']})")
    if case.task:
        out.print(f"task: {case.task}", highlight=False)
    counts = Table(title="Record")
    counts.add_column("facts")
    counts.add_column("count", justify="right")
    for key, value in summary["counts"].items():
        counts.add_row(key.replace("_", " "), str(value))
    out.print(counts)
    images = Table(title="Images")
    images.add_column("id", overflow="fold")
    for col in ("role", "modality", "from", "size", "frames", "study date"):
        images.add_column(col)
    for i in summary["images"]:
        images.add_row(
            i["id"],
            i["role"] or "",
            i["modality"],
            i["modality_source"],
            i["size"],
            str(i["frames"]),
            i["study_date"] or "",
        )
    out.print(images)
    for w in case.warnings:
        out.print(f"[yellow]warning[/yellow] {w}", highlight=False)
    return 0


def _workflows(out: Console) -> int:
    from okaflow.workflows import list_workflows

    table = Table(title="Workflows")
    table.add_column("name")
    table.add_column("sections")
    table.add_column("description")
    for wf in list_workflows():
        table.add_row(wf.name, ", ".join(wf.sections), wf.description)
    out.print(table)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
