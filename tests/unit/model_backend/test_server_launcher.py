"""VLLMServer without vLLM: the command it builds, and the errors a user meets before any engine runs.

The launcher against the real engine is exercised by every test in ``tests/integration/models``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from okaflow import BackendConnectionError, ConfigurationError
from okaflow.model_backend import UNIMEDVL_CHAT_TEMPLATE, VLLMServer, free_port


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_command_carries_every_setting(tmp_path: Path) -> None:
    server = VLLMServer(
        model=tmp_path,
        served_model_name="unimedvl",
        python=sys.executable,
        port=8123,
        dtype="bfloat16",
        max_model_len=4096,
        limit_mm_per_prompt={"image": 2},
        chat_template=UNIMEDVL_CHAT_TEMPLATE,
        trust_request_chat_template=True,
        extra_args=["--tensor-parallel-size", "2"],
    )
    cmd = server.command()
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(cmd, "--model") == str(tmp_path)
    assert flag(cmd, "--served-model-name") == "unimedvl"
    assert flag(cmd, "--host") == "127.0.0.1"  # loopback unless asked otherwise
    assert flag(cmd, "--port") == "8123"
    assert flag(cmd, "--dtype") == "bfloat16"
    assert flag(cmd, "--max-model-len") == "4096"
    assert json.loads(flag(cmd, "--limit-mm-per-prompt")) == {"image": 2}
    assert json.loads(flag(cmd, "--structured-outputs-config"))["backend"] == "xgrammar"
    assert Path(flag(cmd, "--chat-template")).read_text() == UNIMEDVL_CHAT_TEMPLATE
    assert "--trust-request-chat-template" in cmd
    assert "--enforce-eager" in cmd
    assert cmd[-2:] == ["--tensor-parallel-size", "2"]
    assert server.base_url == "http://127.0.0.1:8123/v1"
    server.stop()  # removes the temporary template file
    assert not server.running


def test_missing_model_directory_and_interpreter_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        VLLMServer(model=tmp_path / "nope", python=sys.executable).start()
    with pytest.raises(ConfigurationError, match="no Python interpreter") as info:
        VLLMServer(model=tmp_path, python=tmp_path / "bin" / "python").command()
    assert "vllm-env.sh" in (info.value.hint or "")


def test_a_chat_template_is_a_file_or_template_text_never_a_guess(tmp_path: Path) -> None:
    server = VLLMServer(model=tmp_path, python=sys.executable, chat_template="templates/unimedvl.tmpl")
    with pytest.raises(ConfigurationError, match="not a file, nor template text"):
        server.command()
    (tmp_path / "t.tmpl").write_text(UNIMEDVL_CHAT_TEMPLATE)
    from_file = VLLMServer(model=tmp_path, python=sys.executable, chat_template=tmp_path / "t.tmpl").command()
    assert flag(from_file, "--chat-template") == str(tmp_path / "t.tmpl")


def test_an_interpreter_without_vllm_is_named(tmp_path: Path) -> None:
    server = VLLMServer(model=tmp_path, python=sys.executable, log_path=tmp_path / "server.log")
    with pytest.raises(ConfigurationError, match="has no vllm installed"):
        server.start()
    assert not server.running


def stand_in_vllm(root: Path, api_server: str) -> Path:
    """A ``vllm`` package whose API server module is ``api_server`` (startup failures without an engine)."""
    (root / "vllm" / "entrypoints" / "openai").mkdir(parents=True)
    for pkg in ("vllm", "vllm/entrypoints", "vllm/entrypoints/openai"):
        (root / pkg / "__init__.py").write_text("")
    (root / "vllm/entrypoints/openai/api_server.py").write_text(api_server)
    return root


def test_a_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    fake_root = stand_in_vllm(
        tmp_path / "site",
        "import sys\nprint('RuntimeError: engine core initialisation failed', file=sys.stderr)\nsys.exit(3)\n",
    )
    server = VLLMServer(
        model=tmp_path, python=sys.executable, env={"PYTHONPATH": str(fake_root)}, log_path=tmp_path / "server.log"
    )
    with pytest.raises(BackendConnectionError, match="exited with code 3") as info:
        server.start()
    assert "engine core initialisation failed" in str(info.value)
    assert str(tmp_path / "server.log") in (info.value.hint or "")


def test_a_server_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    fake_root = stand_in_vllm(tmp_path / "site", "import time\nprint('loading weights', flush=True)\ntime.sleep(60)\n")
    server = VLLMServer(
        model=tmp_path,
        python=sys.executable,
        env={"PYTHONPATH": str(fake_root)},
        log_path=tmp_path / "server.log",
        ready_timeout_s=1.0,
    )
    with pytest.raises(BackendConnectionError, match=r"not ready .* within 1 s") as info:
        server.start()
    assert "loading weights" in str(info.value)
    assert not server.running  # start() stopped what it started


def test_cpus_pin_the_server_and_its_openmp_threads(tmp_path: Path) -> None:
    import os

    cpu = min(os.sched_getaffinity(0))
    fake_root = stand_in_vllm(
        tmp_path / "site",
        "import os, sys\n"
        "print('affinity', sorted(os.sched_getaffinity(0)), 'bind', os.environ.get('VLLM_CPU_OMP_THREADS_BIND'))\n"
        "sys.exit(4)\n",
    )
    server = VLLMServer(
        model=tmp_path,
        python=sys.executable,
        env={"PYTHONPATH": str(fake_root)},
        log_path=tmp_path / "server.log",
        cpus=[cpu],
    )
    with pytest.raises(BackendConnectionError, match="exited with code 4"):
        server.start()
    assert f"affinity [{cpu}] bind {cpu}" in (tmp_path / "server.log").read_text()
    assert os.sched_getaffinity(0) != {cpu} or len(os.sched_getaffinity(0)) == 1  # the caller stays unpinned


def test_cpus_outside_the_allowed_set_are_refused_before_starting(tmp_path: Path) -> None:
    for cpus in ([], [10_000]):
        server = VLLMServer(model=tmp_path, python=sys.executable, cpus=cpus, log_path=tmp_path / "never.log")
        with pytest.raises(ConfigurationError, match="subset of the CPUs") as info:
            server.start()
        assert "choose from" in (info.value.hint or "")
        assert not (tmp_path / "never.log").exists()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
