"""The `dcf` command line, run as a user runs it (subprocesses), against real gateways."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import run_cli

from dcf_jupyter.host.credentials import read_owner_token


def test_console_scripts_dcf_and_dcf_cli_are_the_same_cli() -> None:
    for script in ("dcf", "dcf-cli"):
        beside = Path(sys.executable).with_name(script)  # this venv's, activated or not, before another on PATH
        path = str(beside) if beside.exists() else shutil.which(script) or str(beside)
        if not Path(path).exists():
            pytest.skip(f"the {script} console script is not installed (pip install -e .)")
        result = subprocess.run([path, "--version"], capture_output=True, text=True)
        assert result.returncode == 0 and "dcf, version" in result.stdout


def test_runtime_list() -> None:
    result = run_cli("runtime", "list")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("Supported Runtimes are:\n- python ")


def test_init_edit_deploy_call_list_log_delete(fresh_gateway, tmp_path: Path) -> None:
    g = ("-g", fresh_gateway.address)
    result = run_cli("function", "init", "hello-dcf", "--runtime", "python", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "Directory: hello-dcf is created.",
        "Function handler created in directory: hello-dcf/src",
        "Rewrite the function handler code in hello-dcf/src directory",
        "Config file written: hello-dcf/config.yaml",
    ]
    folder = tmp_path / "hello-dcf"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "requirements.txt", "src"]
    handler = folder / "src" / "handler.py"
    handler.write_text(handler.read_text().replace("return req.input", 'return "Hello DCF"'))

    result = run_cli("function", "build", "-f", "config.yaml", "-v", "--no-image", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "Building function (hello-dcf) ..." in result.stdout.decode()

    result = run_cli(*g, "function", "deploy", "-f", "config.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "Deployed: hello-dcf" in result.stdout.decode()

    result = run_cli(*g, "function", "call", "hello-dcf", input=b"Hello\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello DCF\n"
    assert run_cli(*g, "fn", "invoke", "hello-dcf", input=b"Hello\n").stdout == b"Hello DCF\n"
    assert run_cli(*g, "invoke", "hello-dcf", input=b"Hello\n").stdout == b"Hello DCF\n"

    table = run_cli(*g, "function", "list").stdout.decode().splitlines()
    assert table[0].split()[:2] == ["Function", "Image"]
    assert table[1].split()[0] == "hello-dcf" and "Ready" in table[1]
    listed = json.loads(run_cli(*g, "function", "list", "--json").stdout)
    assert listed[0]["name"] == "hello-dcf" and listed[0]["invocations"] == 3

    assert "ready in" in run_cli(*g, "function", "log", "hello-dcf").stdout.decode()
    assert run_cli(*g, "function", "delete", "hello-dcf").stdout == b"Deleted: hello-dcf\n"
    result = run_cli(*g, "function", "call", "hello-dcf", input=b"x")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "Error: function 'hello-dcf' is not deployed (deployed: none)"


def test_call_is_binary_safe(gateway) -> None:
    payload = bytes(range(256)) * 100
    result = run_cli("-g", gateway.address, "function", "call", "echo", input=payload)
    assert result.returncode == 0 and result.stdout == payload


def test_run_works_without_a_gateway(tmp_path: Path) -> None:
    run_cli("function", "init", "hello-dcf", cwd=tmp_path)
    folder = tmp_path / "hello-dcf"
    handler = folder / "src" / "handler.py"
    handler.write_text(handler.read_text().replace("return req.input", 'print("loading"); return "Hello DCF"'))
    result = run_cli("function", "run", "hello-dcf", input=b"Hello\n", cwd=folder, env={"DCF_GATEWAY": "127.0.0.1:1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "Starting [dcf-watcher] server ..." in out
    assert "Call hello-dcf in user's local\nHandler request: Hello\n\nHandler reply: Hello DCF\n" in out
    assert "loading" in result.stderr.decode()  # the handler's prints go to stderr, not the reply stream
    # Seen together (a terminal, a notebook's `!`), the lines come in the order things happened.
    merged = subprocess.run([sys.executable, "-m", "dcf_jupyter.cli", "function", "run", "hello-dcf"], input=b"Hi\n",
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120).stdout.decode()
    assert merged.index("Handler reply: Hello DCF") < merged.index("[dcf-worker] stopping"), merged
    # From the parent folder too: NAME/config.yaml is found.
    assert run_cli("function", "run", "hello-dcf", input=b"x", cwd=tmp_path).returncode == 0


def test_run_reports_a_broken_handler_readably(tmp_path: Path) -> None:
    run_cli("function", "init", "broken", cwd=tmp_path)
    (tmp_path / "broken" / "src" / "handler.py").write_text(
        "class Handler:\n    def __init__(self):\n        raise OSError('weights missing')\n")
    result = run_cli("function", "run", "broken", input=b"x", cwd=tmp_path / "broken")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Error: broken did not start: Handler() raised OSError: weights missing" in err
    assert "line 3, in __init__" in err


def test_malformed_config_exits_nonzero_with_one_line_naming_the_key(tmp_path: Path) -> None:
    run_cli("function", "init", "bad", cwd=tmp_path)
    config = tmp_path / "bad" / "config.yaml"
    config.write_text(config.read_text().replace("gpu: ''", "gpu: [1, 2]"))
    for command in (("function", "build"), ("function", "deploy"), ("function", "run", "bad")):
        result = run_cli(*command, "-f", str(config), cwd=tmp_path)
        assert result.returncode != 0
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "functions.bad.limits.gpu" in lines[0] and str(config) in lines[0]


def test_init_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    for name in ("UPPER", "../x", "a_b"):
        result = run_cli("function", "init", name, cwd=tmp_path)
        assert result.returncode != 0 and b"invalid function name" in result.stderr
    (tmp_path / "taken").mkdir()
    result = run_cli("function", "init", "taken", cwd=tmp_path)
    assert result.returncode != 0 and b"already exists" in result.stderr


@pytest.mark.parametrize("args, sentence", [
    (("function", "scale", "hello-dcf", "-1"), "replicas must be a whole number from 0 to 64, got '-1'"),
    (("function", "scale", "hello-dcf", "abc"), "replicas must be a whole number from 0 to 64, got 'abc'"),
    (("-g", "127.0.0.1:99999", "function", "list"),
     "'127.0.0.1:99999' is not a gateway address: its port must be a number from 1 to 65535"),
])
def test_bad_arguments_are_one_sentence(args: tuple[str, ...], sentence: str) -> None:
    result = run_cli(*args)
    assert result.returncode != 0 and sentence in result.stderr.decode(), result.stderr


def test_help_lists_whole_summaries() -> None:
    listed = run_cli("function", "--help").stdout.decode().split("Commands:", 1)[1]
    assert "the reply comes back unchanged (to stdout in a shell" in " ".join(listed.split()) and "..." not in listed


def test_no_gateway_says_how_to_start_one() -> None:
    result = run_cli("-g", "127.0.0.1:1", "function", "list")
    assert result.returncode == 1
    assert b"no DCF gateway answers at 127.0.0.1:1" in result.stderr
    assert b"dcf gateway start --detach" in result.stderr


def test_gateway_start_detach_status_stop(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    started = run_cli("gateway", "start", "--detach", "--port", "0", "--state-dir", state)
    assert started.returncode == 0, started.stderr
    address = started.stdout.decode().split(" on ")[1].split()[0]
    try:
        again = run_cli("gateway", "start", "--detach", "--port", "0", "--state-dir", state)
        assert b"already running" in again.stdout
        status = run_cli("gateway", "status", "--state-dir", state)
        assert status.returncode == 0 and f"Gateway at {address} (over its Unix socket: it is yours)".encode() in \
            status.stdout, status.stdout
        # Your token, for a client that needs it by hand (read through a pipe: never on a command line).
        assert run_cli("gateway", "token").stdout.decode().strip() == read_owner_token()
        # For scripts: the address alone (export DCF_GATEWAY=$(dcf gateway address --state-dir ...)).
        assert run_cli("gateway", "address", "--state-dir", state).stdout.decode() == address + "\n"
        http = run_cli("gateway", "address", "--http", "--state-dir", state).stdout.decode().strip()
        assert http.startswith("127.0.0.1:") and http != address and f"HTTP: http://{http}".encode() in status.stdout
    finally:
        stopped = run_cli("gateway", "stop", "--state-dir", state)
    assert stopped.returncode == 0 and b"Stopped the gateway" in stopped.stdout
    gone = run_cli("gateway", "address", "--state-dir", state)
    assert gone.returncode == 1 and gone.stdout == b"" and b"No gateway is running for" in gone.stderr
    assert run_cli("-g", address, "gateway", "status").returncode == 1


def test_gateway_token_says_when_there_is_none_yet(tmp_path: Path) -> None:
    none = run_cli("gateway", "token", env={"DCF_CONFIG_DIR": str(tmp_path / "fresh")})
    assert none.returncode == 1 and none.stdout == b"" and b"You have no token yet" in none.stderr


def test_demo_prints_hello_dcf() -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().rstrip().endswith("Hello DCF")


PICKY = """class Handler:
    def __call__(self, req):
        if req.input == b"boom":
            raise RuntimeError("the model broke")
        if not req.input.startswith(b"\\xff\\xd8"):
            raise ValueError("the request is not a JPEG image")
        return "ok"
"""


def test_bad_input_says_the_sentence_first_and_only_v_adds_the_traceback(fresh_gateway, tmp_path: Path) -> None:
    g = ("-g", fresh_gateway.address)
    run_cli("function", "init", "picky", cwd=tmp_path)
    (tmp_path / "picky" / "src" / "handler.py").write_text(PICKY)
    assert run_cli(*g, "function", "deploy", "-f", "picky/config.yaml", cwd=tmp_path).returncode == 0

    result = run_cli(*g, "function", "call", "picky", input=b"some text")
    err = result.stderr.decode()
    print(err)
    assert result.returncode == 1
    assert err.splitlines()[0] == "Error: ValueError: the request is not a JPEG image [INVALID_ARGUMENT]"
    assert "Traceback" not in err and "handler.py" not in err and "-v" in err

    err = run_cli(*g, "function", "call", "picky", "-v", input=b"some text").stderr.decode()
    assert err.splitlines()[0] == "Error: ValueError: the request is not a JPEG image [INVALID_ARGUMENT]"
    # The user's own file, as it sits in their function folder, not the gateway's copy of it.
    assert 'File "src/handler.py", line 6, in __call__' in err and str(fresh_gateway.state_dir) not in err

    # An unexpected exception keeps its traceback, after the sentence.
    err = run_cli(*g, "function", "call", "picky", input=b"boom").stderr.decode()
    assert err.splitlines()[0] == "Error: RuntimeError: the model broke [INTERNAL]"
    assert 'handler.py", line 4, in __call__' in err
    # The log always has the traceback, with the same paths.
    logged = run_cli(*g, "function", "log", "picky").stdout.decode()
    assert "ValueError: the request is not a JPEG image" in logged and 'File "src/handler.py", line 6' in logged
    assert str(fresh_gateway.state_dir) not in logged and "rev-1" not in logged


def test_a_deploy_error_shows_the_users_path_not_the_gateways_copy(fresh_gateway, tmp_path: Path) -> None:
    run_cli("function", "init", "broken", cwd=tmp_path)
    handler = tmp_path / "broken" / "src" / "handler.py"
    handler.write_text("class Handler:\n    def __init__(self):\n        self.model = load_model()\n")
    result = run_cli("-g", fresh_gateway.address, "function", "deploy", "-f", "broken/config.yaml", cwd=tmp_path)
    err = result.stderr.decode()
    print(err)
    assert result.returncode == 1
    assert err.splitlines()[0].startswith("Error: broken did not start: Handler() raised NameError")
    assert f'File "{handler}", line 3, in __init__' in err
    assert "rev-" not in err and str(fresh_gateway.state_dir) not in err


def test_config_mistakes_deploy_names_before_uploading(fresh_gateway, tmp_path: Path) -> None:
    g = ("-g", fresh_gateway.address)
    run_cli("function", "init", "typo", cwd=tmp_path)
    config = tmp_path / "typo" / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("functions:", "function:", 1))
    err = run_cli(*g, "function", "deploy", "-f", str(config)).stderr.decode()
    assert err.strip() == f"Error: {config}: functions: no functions defined: the key is 'functions:', not 'function'"
    config.write_text(original.replace("dir: ./src", "dir: ./scr"))
    for command in (("function", "build", "--no-image"), ("function", "deploy")):
        err = run_cli(*g, *command, "-f", str(config)).stderr.decode()
        assert "no handler file at scr/handler.py (set handler.dir / handler.file)" in err, err
    assert fresh_gateway.client.list() == []


def test_run_prints_a_syntax_error_once(tmp_path: Path) -> None:
    run_cli("function", "init", "syntax", cwd=tmp_path)
    (tmp_path / "syntax" / "src" / "handler.py").write_text("class Handler(:\n    pass\n")
    result = run_cli("function", "run", "syntax", "--local", input=b"x", cwd=tmp_path / "syntax")
    out = result.stdout.decode() + result.stderr.decode()
    print(out)
    assert result.returncode == 1
    assert out.count("class Handler(:") == 1 and out.count("SyntaxError: invalid syntax") == 1, "one traceback"
    assert result.stderr.decode().strip().splitlines()[-1].startswith("Error: syntax did not start: syntax error")


def test_build_names_the_base_image_even_without_building(tmp_path: Path) -> None:
    run_cli("function", "init", "seer", "--runtime", "python", cwd=tmp_path)
    config = tmp_path / "seer" / "config.yaml"
    plain = run_cli("function", "build", "-v", "--no-image", cwd=config.parent)
    assert plain.returncode == 0 and b"Base image: python:" in plain.stdout, plain.stdout
    config.write_text(config.read_text().replace("gpu: ''", "gpu: 1"))  # asks for a GPU: built on CUDA
    gpu = run_cli("function", "build", "-v", "--no-image", cwd=config.parent)
    assert b"Base image: nvidia/cuda:" in gpu.stdout and b"(no image built: --no-image)" in gpu.stdout, gpu.stdout
