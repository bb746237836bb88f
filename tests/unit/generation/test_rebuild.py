"""Generators a run records so resume and rerun can build them again; secrets never recorded."""

from __future__ import annotations

import json

import pytest

import okaflow
from okaflow._record import generator_for
from okaflow.tools.generation import (
    ClassicalGenerator,
    GenerationLimits,
    GeneratorChain,
    ImageEndpointGenerator,
)


def manifest_with(generator: object) -> dict[str, object]:
    spec = getattr(generator, "rebuild_spec", None)
    return {"settings": {"generator": {"name": "x", "model_id": None, "tasks": [], "rebuild": spec}}}


def test_an_endpoint_is_recorded_without_its_key_or_credentials_and_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKAFLOW_API_KEY", "sk-secret")
    with ImageEndpointGenerator(base_url="http://user:pw@gpu-host:8091/v1", model="unimedvl", api="chat") as gen:
        recorded = json.dumps(gen.rebuild_spec)
        assert "sk-secret" not in recorded and "pw" not in recorded
        chain = GeneratorChain(gen, ClassicalGenerator())
        rebuilt = generator_for(json.loads(json.dumps(manifest_with(chain))))
    try:
        first = rebuilt.generators[0]
        assert isinstance(first, ImageEndpointGenerator) and isinstance(rebuilt.generators[1], ClassicalGenerator)
        assert (first.base_url, first.model, first.api) == ("http://gpu-host:8091/v1", "unimedvl", "chat")
    finally:
        rebuilt.close()


def test_a_generator_with_settings_a_record_cannot_hold_asks_to_be_passed_again() -> None:
    with ImageEndpointGenerator(base_url="http://h/v1", model="m", limits=GenerationLimits(max_side=512)) as gen:
        assert gen.rebuild_spec is None
        with pytest.raises(okaflow.ConfigurationError, match="cannot rebuild"):
            generator_for(manifest_with(gen))
    gone = {"kind": "diffusers", "pipeline": "/nowhere/pipeline", "device": "cpu", "dtype": "float32"}
    with pytest.raises(okaflow.ConfigurationError, match="is gone"):
        generator_for({"settings": {"generator": {"name": "diffusers", "rebuild": gone}}})


def test_a_generator_option_is_resolved_in_one_place() -> None:
    from okaflow._run import _generator
    from okaflow.tools.generation import AsyncImageEndpointGenerator

    assert isinstance(_generator("okaflow.tools.generation:ClassicalGenerator"), ClassicalGenerator), "a class"
    made = ClassicalGenerator()
    assert _generator(made) is made and _generator(None) is None, "resolved options pass through"
    with pytest.raises(okaflow.ConfigurationError, match="cannot load generator"):
        _generator("okaflow.tools.generation:NoSuchGenerator")
    with pytest.raises(okaflow.ConfigurationError, match="unknown generator"):
        _generator("diffusers")
    # An async-only tool would refuse every request inside the agent: refused before the run starts.
    assert AsyncImageEndpointGenerator.synchronous is False

    class AwaitOnly(ClassicalGenerator):
        synchronous = False

    with pytest.raises(okaflow.ConfigurationError, match="AwaitOnly can only be awaited"):
        _generator(GeneratorChain(AwaitOnly(), made))
