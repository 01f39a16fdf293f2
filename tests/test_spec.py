"""config.yaml: DCF files load unchanged, writes round-trip, mistakes are named by key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcf_jupyter.definition.spec import ConfigFile, GpuRequest, dump_config, load_config, parse_config, validate_name
from dcf_jupyter.errors import ConfigError, InvalidName

# Exactly what the original DCF CLI wrote for DCF's SSD example.
DCF_WRITTEN = """\
functions:
  ssd-gpu:
    runtime: python
    desc: ""
    maintainer: ""
    handler:
      dir: ./src
      file: ""
      name: Handler
    docker_registry: keti.asuscomm.com:5001
    image: keti.asuscomm.com:5001/ssd-gpu
    limits:
      memory: ""
      cpu: ""
      gpu: "1"
    build_args:
    - CUDA_VERSION=9.0
    - CUDNN_VERSION=7.4.1.5
    - UBUNTU_VERSION=16.04
dcf:
  gateway: keti.asuscomm.com:32222
"""


def test_a_config_written_by_the_dcf_cli_loads_unchanged(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(DCF_WRITTEN)
    config = load_config(tmp_path / "config.yaml")
    assert config.warnings == []
    assert config.gateway == "keti.asuscomm.com:32222"
    spec = config.function()
    assert spec.name == "ssd-gpu" and spec.runtime == "python"
    assert spec.handler.dir == "./src" and spec.handler.filename == "handler.py" and spec.handler.name == "Handler"
    assert spec.docker_registry == "keti.asuscomm.com:5001" and spec.image == "keti.asuscomm.com:5001/ssd-gpu"
    assert spec.limits.as_dcf() == {"memory": "", "cpu": "", "gpu": "1"}
    assert spec.limits.gpu == GpuRequest(1) and spec.limits.cpus is None and spec.limits.memory_bytes is None
    assert spec.wants_cuda  # a GPU asked for means a CUDA base image, whatever the runtime
    assert spec.build_arg_map == {"CUDA_VERSION": "9.0", "CUDNN_VERSION": "7.4.1.5", "UBUNTU_VERSION": "16.04"}
    assert spec.handler_path == tmp_path.resolve() / "src" / "handler.py"


def test_writing_keeps_the_dcf_layout_and_round_trips() -> None:
    config = parse_config(DCF_WRITTEN)
    text = dump_config(config)
    assert text == DCF_WRITTEN.replace('""', "''").replace('"1"', "'1'")
    again = parse_config(text)
    assert again.function() == config.function()


def test_the_docs_example_with_python3_runtime_and_environment_loads() -> None:
    config = parse_config("""
dcf:
  gateway: keti.asuscomm.com:32222
functions:
  echo-service:
    runtime: python3
    desc: "This is echo service."
    maintainer: "KETI"
    handler: {dir: ./echo-service, file: handler.py, name: Handler}
    image: keti.asuscomm.com:5001/echo-service
    environment: ["PATH=/usr/local/bin", "MODE=fast"]
    skip_build: true
    limits: {cpu: 1, gpu: 1, memory: 1G}
""")
    spec = config.function("echo-service")
    assert spec.environment == {"PATH": "/usr/local/bin", "MODE": "fast"}
    assert spec.limits.cpus == 1.0 and spec.limits.memory_bytes == 10**9 and spec.skip_build


@pytest.mark.parametrize(
    "snippet, key",
    [
        ("limits: {gpu: [1]}", "functions.f.limits.gpu"),
        ("limits: {gpu: 1.5}", "functions.f.limits.gpu"),
        ("limits: {gpu: '-1'}", "functions.f.limits.gpu"),
        ("limits: {gpu: 'H100:'}", "functions.f.limits.gpu"),
        ("limits: {gpu: 100}", "functions.f.limits.gpu"),
        ("limits: {gpu_type: H100}", "functions.f.limits.gpu"),
        ("limits: {gpu: 'A100:1', gpu_type: H100}", "functions.f.limits.gpu"),
        ("limits: {memory: lots}", "functions.f.limits.memory"),
        ("limits: {cpu: '-1'}", "functions.f.limits.cpu"),
        ("handler: [a, b]", "functions.f.handler"),
        ("handler: {name: 'not a class'}", "functions.f.handler.name"),
        ("handler: {file: '../../etc/passwd.py'}", "functions.f.handler.file"),
        ("build_args: [NOEQUALS]", "functions.f.build_args[0]"),
        ("replicas: 1000", "functions.f.replicas"),
        ("replicas: many", "functions.f.replicas"),
        ("timeout: -3", "functions.f.timeout"),
        ("runtime: cobol", "functions.f.runtime"),
        ("environment: [JUSTANAME]", "functions.f.environment[0]"),
        ("skip_build: sometimes", "functions.f.skip_build"),
        ("handler: {dir: ../elsewhere}", "functions.f.handler.dir"),
        ("handler: {dir: /etc}", "functions.f.handler.dir"),
        ("timeout: .nan", "functions.f.timeout"),
        ("replicas: [1, 2]", "functions.f.replicas"),
        ("autoscaling: {min_replicas: 1}", "functions.f.autoscaling.max_replicas"),
        ("autoscaling: {min_replicas: 3, max_replicas: 2}", "functions.f.autoscaling.max_replicas"),
        ("autoscaling: {min_replicas: -1, max_replicas: 2}", "functions.f.autoscaling.min_replicas"),
        ("autoscaling: {max_replicas: 0}", "functions.f.autoscaling.max_replicas"),
        ("autoscaling: {max_replicas: 2, downscale_delay_s: -1}", "functions.f.autoscaling.downscale_delay_s"),
        ("autoscaling: {max_replicas: 2, upscale_delay_s: -0.5}", "functions.f.autoscaling.upscale_delay_s"),
        ("autoscaling: {max_replicas: 2, target_ongoing_requests: 0}",
         "functions.f.autoscaling.target_ongoing_requests"),
        ("autoscaling: {max_replicas: 2, upscale_delay_s: soon}", "functions.f.autoscaling.upscale_delay_s"),
        ("autoscaling: 4", "functions.f.autoscaling"),
        ("batching: {max_batch_size: 0}", "functions.f.batching.max_batch_size"),
        ("batching: {max_wait_ms: -1}", "functions.f.batching.max_wait_ms"),
        ("batching: {max_batch_size: lots}", "functions.f.batching.max_batch_size"),
        ("batching: 8", "functions.f.batching"),
        ("max_queued_requests: -2", "functions.f.max_queued_requests"),
    ],
)
def test_wrong_types_and_values_name_the_key_and_the_file(tmp_path: Path, snippet: str, key: str) -> None:
    (tmp_path / "config.yaml").write_text(f"functions:\n  f:\n    {snippet}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.yaml")
    message = str(info.value)
    assert f"{tmp_path / 'config.yaml'}: {key}:" in message
    assert "\n" not in message


def test_autoscaling_loads_with_serves_names_and_round_trips() -> None:
    config = parse_config("functions:\n  f:\n    autoscaling: {max_replicas: 4, target_ongoing_requests: 2,"
                          " downscale_delay_s: 60, max_replica: 5}\n")
    spec = config.function()
    assert spec.autoscaling is not None
    assert spec.autoscaling.as_dict() == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2.0,
                                          "downscale_delay_s": 60.0}
    assert config.warnings == ["config.yaml: functions.f.autoscaling.max_replica: unknown key, ignored "
                               "(did you mean 'max_replicas'?; known: downscale_delay_s, max_replicas, "
                               "min_replicas, target_ongoing_requests, upscale_delay_s)"]
    assert parse_config(dump_config(config)).function() == spec
    assert parse_config("functions:\n  f: {}\n").function().autoscaling is None


def test_batching_and_the_queue_bound_load_with_defaults_and_round_trip() -> None:
    config = parse_config("functions:\n  f:\n    batching: {max_batch_size: 16}\n    max_queued_requests: 0\n")
    spec = config.function()
    assert spec.batching is not None and (spec.batching.max_batch_size, spec.batching.max_wait_s) == (16, 0.01)
    assert (spec.max_queued_requests, spec.calls_at_once) == (0, 16)
    assert parse_config(dump_config(config)).function() == spec
    plain = parse_config("functions:\n  f: {}\n").function()
    assert (plain.batching, plain.max_queued_requests, plain.calls_at_once) == (None, 256, 1)
    assert "batching" not in dump_config(parse_config("functions:\n  f: {}\n"))  # unchanged for DCF's CLI


def test_unknown_keys_warn_and_load() -> None:
    config = parse_config("functions:\n  f:\n    colour: blue\n    limits: {disk: 1G}\nextra: 1\n")
    assert len(config.warnings) == 3
    assert any("functions.f.colour" in w for w in config.warnings)
    assert any("functions.f.limits.disk" in w for w in config.warnings)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("functions: [", "not valid YAML (line 1"),
        ("!!python/object/apply:os.system ['echo hacked']", "not valid YAML"),
        ("functions:\n  f: !!python/name:os.system\n", "not valid YAML"),
        ("- a\n- b\n", "(top level): expected a mapping"),
        ("functions: {}\n", "functions: no functions defined"),
        ("functions:\n  Bad_Name: {}\n", "functions.Bad_Name: invalid function name"),
    ],
)
def test_hostile_or_malformed_files_are_refused_with_a_sentence(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="config.yaml")
    assert fragment in str(info.value)


@pytest.mark.parametrize("key", ["replicas", "timeout", "concurrency", "desc", "environment", "labels", "limits"])
def test_billion_laughs_is_refused_without_expanding_it(key: str) -> None:
    # Ten levels of ten aliases: 10**10 strings if anything str()-ed the value.
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "\n".join(lines) + f"\nfunctions:\n  f:\n    {key}: *l9\n"
    with pytest.raises(ConfigError, match=f"functions.f.{key}"):
        parse_config(text)


def test_oversized_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("functions:\n  f:\n    desc: " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


def test_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dcf function init"):
        load_config(tmp_path / "config.yaml")


@pytest.mark.parametrize("name", ["hello-dcf", "a", "x1", "a" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "UPPER", "-lead", "trail-", "a_b", "a.b", "a" * 64, "a/b", None, 3])
def test_invalid_names(name: object) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize(
    "limits, count, kind, written",
    [
        ("{gpu: 1}", 1.0, "", "1"),
        ("{gpu: '2'}", 2.0, "", "2"),
        ("{gpu: 0.5}", 0.5, "", "0.5"),
        ("{gpu: .25}", 0.25, "", "0.25"),
        ("{gpu: 'H100:1'}", 1.0, "H100", "H100:1"),
        ("{gpu: 1, gpu_type: A100}", 1.0, "A100", "A100:1"),
        ("{gpu: 'h100:0.5', gpu_type: H100}", 0.5, "h100", "h100:0.5"),
        ("{gpu: ''}", 0.0, "", ""),
    ],
)
def test_a_gpu_request_is_whole_devices_or_a_share_of_one_of_a_kind(limits: str, count: float, kind: str,
                                                                   written: str) -> None:
    spec = parse_config(f"functions:\n  f:\n    limits: {limits}\n").function()
    assert (spec.limits.gpu.count, spec.limits.gpu.kind, str(spec.limits.gpu)) == (count, kind, written)
    assert spec.wants_cuda == bool(count)
    assert parse_config(dump_config(ConfigFile({"f": spec}))).function().limits == spec.limits


def test_requests_warns_that_no_backend_reads_it() -> None:
    config = parse_config("functions:\n  f:\n    requests: {cpu: 1}\n")
    assert config.warnings == ["config.yaml: functions.f.requests: not used by dcf-jupyter, ignored: every backend "
                               "reserves what `limits:` asks"]
