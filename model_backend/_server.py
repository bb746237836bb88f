"""Start and stop a vLLM OpenAI-compatible server as a subprocess, with readiness polling and a captured log.

okaflow never imports vllm: :class:`VLLMServer` runs ``python -m vllm.entrypoints.openai.api_server``
with an interpreter that has vllm installed (its own virtual environment, as the vLLM project
recommends; ``scripts/vllm-env.sh`` builds the CPU one the tests use). It binds 127.0.0.1 unless
told otherwise, polls ``/health`` and ``/v1/models`` until a deadline, and keeps the server's log in
a file named in every error. Users reach it as ``okaflow model serve``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from okaflow._constants import ENV_VLLM_PYTHON, VLLM_READY_TIMEOUT_S, VLLM_STOP_TIMEOUT_S
from okaflow._errors import BackendConnectionError, ConfigurationError

__all__ = ["VLLMServer", "free_port"]

_LOG_TAIL_CHARS = 3000
# Run by okaflow's own interpreter: pins itself, then becomes the server (exec keeps the affinity, and
# everything vLLM starts inherits it). A preexec_fn would run Python in a child forked from a process
# that may have threads (arun's workers), which Python's documentation warns can deadlock.
_PINNED_EXEC = (
    "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); os.execvp(sys.argv[2], sys.argv[2:])"
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class VLLMServer:
    """A vLLM OpenAI server for one model, run as a child process.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with VLLMServer(model="/models/unimedvl", served_model_name="unimedvl", python=".venv-vllm/bin/python") as srv:
            backend = OpenAIBackend(base_url=srv.base_url, model="unimedvl")

    Args:
        model: A local model directory (nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set).
        served_model_name: The name clients send as ``model``; default: the directory name.
        python: An interpreter with vllm installed; default ``$OKAFLOW_VLLM_PYTHON``, else ``python3``.
        host: The bind address; 127.0.0.1 unless you mean to expose the server.
        port: The port; 0 picks a free one.
        dtype: ``float32`` on CPU; ``bfloat16``/``float16``/``auto`` on a GPU.
        max_model_len: The context length the server allocates for.
        limit_mm_per_prompt: Media per prompt, e.g. ``{"image": 1}`` (vLLM rejects prompts over it).
        chat_template: A Jinja file or template text to pin the server's chat template (role-less
            models such as UniMedVL need theirs pinned; :data:`UNIMEDVL_CHAT_TEMPLATE` is one).
        trust_request_chat_template: Accept a ``chat_template`` sent with each request (vLLM refuses them
            by default); pinning one with ``chat_template`` needs no trust.
        structured_outputs: vLLM's ``--structured-outputs-config`` (guided decoding for ``response_format``).
        enforce_eager: No CUDA graphs / compilation (needed on CPU, faster start everywhere).
        seed: The engine's seed.
        extra_args: More command-line flags, appended last.
        env: More environment variables for the server.
        cpus: Run the server (API process, engine and its OpenMP threads) on these CPUs only, e.g. to
            keep cores free for okaflow's own work on a shared CPU host. Linux only; ``None``: all.
        log_path: Where the server's stdout and stderr go; default a temporary file (kept after stop).
        ready_timeout_s: How long :meth:`start` waits for readiness.
    """

    model: str | Path
    served_model_name: str | None = None
    python: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    dtype: str = "float32"
    max_model_len: int = 1024
    limit_mm_per_prompt: Mapping[str, int] | None = None
    chat_template: str | Path | None = None
    trust_request_chat_template: bool = False
    structured_outputs: Mapping[str, Any] | None = field(
        default_factory=lambda: {"backend": "xgrammar", "disable_any_whitespace": True}
    )
    enforce_eager: bool = True
    seed: int = 0
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: Collection[int] | None = None
    log_path: Path | None = None
    ready_timeout_s: float = VLLM_READY_TIMEOUT_S
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)
    _template_file: Path | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        """The served model name."""
        return self.served_model_name or Path(self.model).name

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://HOST:PORT/v1`` (after :meth:`start` when ``port`` was 0)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (``port`` must be set, or 0 for "pick at start")."""
        cmd = [
            str(self._interpreter()),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            self.name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--seed",
            str(self.seed),
        ]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.structured_outputs is not None:
            cmd += ["--structured-outputs-config", json.dumps(dict(self.structured_outputs))]
        if self.limit_mm_per_prompt is not None:
            cmd += ["--limit-mm-per-prompt", json.dumps(dict(self.limit_mm_per_prompt))]
        if self.trust_request_chat_template:
            cmd.append("--trust-request-chat-template")
        template = self._template_path()
        if template is not None:
            cmd += ["--chat-template", str(template)]
        return cmd + list(self.extra_args)

    def start(self) -> Self:
        """Start the server and wait until it serves the model.

        Raises:
            ConfigurationError: The model directory or the interpreter does not exist, the interpreter has no
                vllm, or ``cpus`` names CPUs this process may not use.
            BackendConnectionError: The server exited, or was not ready within ``ready_timeout_s``
                (the message holds the end of its log and the log's path).
        """
        if self.running:
            return self
        if not Path(self.model).is_dir():
            raise ConfigurationError(
                f"model directory {self.model} does not exist",
                hint="vLLM serves local weights here (no hub access): pass the folder holding config.json",
            )
        pinned = self._pinned()
        if self.port == 0:
            self.port = free_port(self.host)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix=f"okaflow-vllm-{self.name}-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log = self.log_path.open("ab")
        cpu_list = ",".join(map(str, pinned)) if pinned else None
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            # vLLM's CPU engine binds its OpenMP threads itself ("auto": from every core): name the same CPUs.
            **({"VLLM_CPU_OMP_THREADS_BIND": cpu_list} if cpu_list else {}),
            **self.env,
        }
        command = self.command()
        if cpu_list:
            # -I: the PYTHON* variables in env are for vLLM's interpreter, not for this short one.
            command = [sys.executable, "-I", "-c", _PINNED_EXEC, cpu_list, *command]
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # stop() signals the whole group: vLLM forks an engine process
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _pinned(self) -> list[int] | None:
        """``cpus``, checked and sorted (``None``: not pinned).

        Raises:
            ConfigurationError: ``cpus`` is empty, names a CPU this process may not use, or the system
                cannot pin processes (only Linux can).
        """
        if self.cpus is None:
            return None
        if not hasattr(os, "sched_setaffinity"):
            raise ConfigurationError("cpus= pins CPUs on Linux only", hint="leave cpus (--cpus) unset on this system")
        allowed = os.sched_getaffinity(0)
        if not self.cpus or not set(self.cpus) <= allowed:
            raise ConfigurationError(
                f"cpus={sorted(self.cpus)} is not a non-empty subset of the CPUs this process may use",
                hint=f"choose from {sorted(allowed)}",
            )
        return sorted(self.cpus)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Poll ``/health`` and ``/v1/models`` until the model is listed, the process exits, or the deadline.

        Raises:
            ConfigurationError: The interpreter has no vllm.
            BackendConnectionError: Exited or not ready in time (with the log's tail).
        """
        deadline = time.monotonic() + (self.ready_timeout_s if timeout_s is None else timeout_s)
        root = self.base_url.removesuffix("/v1")
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process is None or self._process.poll() is not None:
                    code = None if self._process is None else self._process.returncode
                    if "No module named 'vllm'" in self.log_tail() or "No module named vllm" in self.log_tail():
                        raise ConfigurationError(
                            f"{self._interpreter()} has no vllm installed",
                            hint=f"pass python= (or set ${ENV_VLLM_PYTHON}) to a venv with vllm; "
                            "scripts/vllm-env.sh builds the CPU one",
                        )
                    raise BackendConnectionError(
                        f"the vLLM server for {self.model} exited with code {code} before it was ready\n"
                        + self.log_tail(),
                        backend="vllm",
                        hint=f"read the whole log: {self.log_path}",
                    )
                try:
                    if client.get(f"{root}/health").status_code == 200:
                        listed = client.get(f"{self.base_url}/models").json()
                        if any(m.get("id") == self.name for m in listed.get("data", [])):
                            return
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise BackendConnectionError(
                        f"the vLLM server for {self.model} was not ready at {self.base_url} within "
                        f"{timeout_s or self.ready_timeout_s:.0f} s\n" + self.log_tail(),
                        backend="vllm",
                        hint=f"raise ready_timeout_s, or read the whole log: {self.log_path}",
                    )
                time.sleep(0.25)

    def stop(self, timeout_s: float = VLLM_STOP_TIMEOUT_S) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``timeout_s``); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._template_file is not None:
            self._template_file.unlink(missing_ok=True)
            self._template_file = None

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The end of the server's log (empty before :meth:`start`)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - chars))
            return fh.read().decode("utf-8", errors="replace")

    def _interpreter(self) -> Path:
        chosen = self.python or os.environ.get(ENV_VLLM_PYTHON) or "python3"
        path = Path(chosen)
        if path.parent == Path() and not path.exists():
            return path  # a bare name: found on PATH when started
        if not path.exists():
            raise ConfigurationError(
                f"no Python interpreter at {path} for the vLLM server",
                hint=f"pass python= or set ${ENV_VLLM_PYTHON} to a venv with vllm (scripts/vllm-env.sh builds one)",
            )
        return path

    def _template_path(self) -> Path | None:
        if self.chat_template is None:
            return None
        text = str(self.chat_template)
        # Template text has Jinja tags; anything else is a file name, which must exist (no guessing).
        if isinstance(self.chat_template, Path) or not ("{{" in text or "{%" in text):
            candidate = Path(self.chat_template)
            if not candidate.is_file():
                raise ConfigurationError(
                    f"chat template {text!r} is not a file, nor template text (no {{{{ or {{% in it)",
                    hint="pass the path of a Jinja file, or the template itself",
                )
            return candidate
        if self._template_file is None:
            handle, name = tempfile.mkstemp(prefix="okaflow-chat-template-", suffix=".jinja")
            with os.fdopen(handle, "w", encoding="utf-8") as fh:
                fh.write(str(self.chat_template))
            self._template_file = Path(name)
        return self._template_file

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
