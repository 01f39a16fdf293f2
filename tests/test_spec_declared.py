"""config.yaml's keys are declared once: the JSON Schema an editor uses, the loader, the writer, the magic's flags
and function()'s keywords all follow from one declaration per key, and agree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import run_cli

from dcf_jupyter.definition.keys import Integer, dump_section, key, key_paths, read_section, section_schema
from dcf_jupyter.definition.reader import Reader
from dcf_jupyter.definition.scaffold import init_function
from dcf_jupyter.definition.spec import (
    SCHEMA_PATH,
    FunctionSpec,
    flag_spelling,
    keyword_paths,
    parse_config,
    schema_text,
    spec_from_settings,
)
from dcf_jupyter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_schema_is_what_the_declarations_say() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "config.schema.json is stale: python -c 'from dcf_jupyter.definition.spec import SCHEMA_PATH, schema_text; "
        "SCHEMA_PATH.write_text(schema_text())'")


# Files the loader refuses (or warns about, for a key it does not know), each with what the schema says of it.
REFUSED = {
    "functions: {f: {concurrency: 0}}": "0 is less than the minimum of 1",
    "functions: {f: {limits: {gpu: two}}}": "'two' does not match",
    "functions: {f: {limits: {memory: lots}}}": "'lots' does not match",
    "functions: {f: {concurency: 2}}": "'concurency' was unexpected",
    "functions: {f: {autoscaling: {min_replicas: 0}}}": "'max_replicas' is a required property",
    "functions: {f: {timeout: 0}}": "0 is less than the minimum of 0.001",
    "functions: {f: {skip_build: maybe}}": "'maybe' is not of type 'boolean'",
    "functions: {Bad_Name: {}}": "'Bad_Name' does not match",
    "functions: {f: {}}\ndcf: {gateways: x}": "'gateways' was unexpected",
}


def test_the_schema_agrees_with_the_loader(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="the schema is checked with jsonschema (a Jupyter "
                                                           "dependency): pip install -e '.[dev]'")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    init_function("fresh", parent=tmp_path, gateway="127.0.0.1:1")
    accepted = [*sorted((ROOT / "functions").glob("*/config.yaml")), tmp_path / "fresh" / "config.yaml"]
    assert len(accepted) >= 6
    for path in accepted:
        data = yaml.safe_load(path.read_text())
        assert parse_config(path.read_text()).warnings == []
        assert [e.message for e in validator.iter_errors(data)] == [], path
    for text, said in REFUSED.items():
        try:
            loaded = parse_config(text)
        except ConfigError:
            pass
        else:
            assert loaded.warnings, f"the loader took {text!r} without a word"
        messages = [e.message for e in validator.iter_errors(yaml.safe_load(text))]
        assert any(said in message for message in messages), (text, messages)


def test_a_new_key_is_one_declaration() -> None:
    @dataclass
    class WithBatches(FunctionSpec):
        max_batch_size: int = key(1, Integer(1, 1024), help="calls one Handler call takes at most", flag="--batch",
                                  keyword="batch")

    def read(body: dict) -> WithBatches:
        found: WithBatches = read_section(WithBatches, Reader("config.yaml"), body, "functions.f.", name="f")
        return found

    assert read({"max_batch_size": "8"}).max_batch_size == 8  # read and typed
    assert dump_section(read({"max_batch_size": 8}))["max_batch_size"] == 8  # written
    assert "max_batch_size" not in dump_section(read({}))  # not at its default, as our other keys
    with pytest.raises(ConfigError, match=r"^config.yaml: functions.f.max_batch_size: must be between 1 and 1024, "
                                          r"got 0$"):
        read({"max_batch_size": 0})
    described = section_schema(WithBatches)["properties"]["max_batch_size"]
    assert described == {"description": "calls one Handler call takes at most", "type": "integer", "minimum": 1,
                         "maximum": 1024, "default": 1}
    offered = {path.path: (path.key.flag, path.key.keyword) for path in key_paths(WithBatches)}
    assert offered["max_batch_size"] == ("--batch", "batch")


def test_flags_and_keywords_are_the_declared_keys_named_as_the_user_wrote_them() -> None:
    assert flag_spelling()["limits.gpu"] == "--gpu" and flag_spelling()["autoscaling.max_replicas"] == "--max-replicas"
    assert keyword_paths()["gpu"] == "limits.gpu" and keyword_paths()["autoscaling"] == "autoscaling"
    spec = spec_from_settings("f", {"limits.gpu": "0.5", "timeout": "5", "secrets": ["a", "b", "a"],
                                    "autoscaling.max_replicas": "3"}, source="%%dcf_function f",
                              spelling=flag_spelling())
    assert (str(spec.limits.gpu), spec.timeout, spec.secrets, spec.image) == ("0.5", 5.0, ["a", "b"], "f")
    assert spec.autoscaling is not None and spec.autoscaling.max_replicas == 3
    batched = spec_from_settings("f", {"batching.max_batch_size": "8", "batching.max_wait_ms": "5"},
                                 source="%%dcf_function f", spelling=flag_spelling())
    assert batched.batching is not None and (batched.batching.max_batch_size, batched.batching.max_wait_ms) == (8, 5)
    assert flag_spelling()["batching.max_batch_size"] == "--batch" and keyword_paths()["batching"] == "batching"
    with pytest.raises(ConfigError, match=r"^%%dcf_function f: --batch-wait-ms: must be between 0 and 60000"):
        spec_from_settings("f", {"batching.max_wait_ms": "-1"}, source="%%dcf_function f", spelling=flag_spelling())
    with pytest.raises(ConfigError, match=r"^%%dcf_function f: --concurrency: must be between 1 and 256, got 0$"):
        spec_from_settings("f", {"concurrency": "0"}, source="%%dcf_function f", spelling=flag_spelling())
    with pytest.raises(ConfigError, match=r"^f\(\): secrets\[0\]: invalid secret name 'Bad'"):
        spec_from_settings("f", {"secrets": ["Bad"]}, source="f()", spelling={})


def test_dcf_function_schema_prints_it_and_says_where_it_is() -> None:
    printed = run_cli("function", "schema")
    assert printed.returncode == 0 and json.loads(printed.stdout)["properties"]["functions"], printed.stderr
    where = run_cli("function", "schema", "--path")
    assert where.returncode == 0 and Path(where.stdout.decode().strip()) == SCHEMA_PATH
