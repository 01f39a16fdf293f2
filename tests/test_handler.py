"""The handler contract: loading a Handler, and what its return values become."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dcf_jupyter.worker.handler import (
    BINARY,
    JSON,
    TEXT,
    HandlerLoadError,
    Request,
    as_text,
    collect_results,
    encode_result,
    is_stream,
    load_handler,
)


def write(tmp_path: Path, source: str, name: str = "handler.py") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(source))
    return tmp_path


def test_handler_is_built_once_and_called_per_request(tmp_path: Path) -> None:
    write(tmp_path, """
        class Handler:
            built = 0
            def __init__(self):
                Handler.built += 1
                self.calls = 0
            def __call__(self, req):
                self.calls += 1
                return f"{req.input.decode()} #{self.calls} (built {Handler.built})"
    """)
    handler = load_handler(tmp_path)
    assert handler(Request(b"a")) == "a #1 (built 1)"
    assert handler(Request(b"b")) == "b #2 (built 1)"


def test_a_handler_can_import_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "def predict(x):\n    return x[::-1]\n", "predict.py")
    write(tmp_path, "from predict import predict\n"
                    "class Handler:\n    def __call__(self, req):\n        return predict(req.text)\n")
    assert load_handler(tmp_path)(Request(b"abc")) == "cba"


def test_a_plain_function_works_as_the_handler(tmp_path: Path) -> None:
    write(tmp_path, "def Handler(req):\n    return req.input.upper()\n")
    assert load_handler(tmp_path)(Request(b"abc")) == b"ABC"


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("class Handler(:\n    pass\n", "syntax error in handler.py, line 1"),
        ("import no_such_module_xyz\n", "importing handler.py failed: ModuleNotFoundError"),
        ("class Other:\n    pass\n", "defines no 'Handler' (it defines: Other)"),
        ("class Handler:\n    def __init__(self):\n        raise OSError('no model')\n",
         "Handler() raised OSError: no model"),
        ("class Handler:\n    pass\n", "has no __call__"),
        ("Handler = 3\n", "is a int, not a class or function"),
    ],
)
def test_load_errors_say_what_is_wrong(tmp_path: Path, source: str, fragment: str) -> None:
    write(tmp_path, source)
    with pytest.raises(HandlerLoadError) as info:
        load_handler(tmp_path)
    assert fragment in str(info.value)


def test_load_error_traceback_shows_the_users_code_only(tmp_path: Path) -> None:
    write(tmp_path, "class Handler:\n    def __init__(self):\n        1 / 0\n")
    with pytest.raises(HandlerLoadError) as info:
        load_handler(tmp_path)
    assert 'handler.py", line 3, in __init__' in info.value.detail
    assert "dcf_jupyter" not in info.value.detail


def test_missing_handler_file(tmp_path: Path) -> None:
    with pytest.raises(HandlerLoadError, match="no handler file"):
        load_handler(tmp_path)


def test_return_values_are_encoded_by_type() -> None:
    np = pytest.importorskip("numpy")
    assert encode_result("héllo") == (TEXT, "héllo".encode())
    assert encode_result(b"\x00\xff") == (BINARY, b"\x00\xff")
    assert encode_result(bytearray(b"ab")) == (BINARY, b"ab")
    assert encode_result(None) == (TEXT, b"")
    content_type, payload = encode_result(
        {"boxes": [{"xmin": np.int64(3), "score": np.float32(0.5)}], "a": np.arange(2)})
    assert content_type == JSON
    assert json.loads(payload) == {"boxes": [{"xmin": 3, "score": 0.5}], "a": [0, 1]}
    with pytest.raises(TypeError, match="not str, bytes or JSON-serialisable"):
        encode_result(object())


def test_generators_stream_and_fold() -> None:
    assert is_stream(x for x in "ab") and not is_stream([1]) and not is_stream("ab") and not is_stream(b"ab")
    assert collect_results(iter(["a", "b"])) == (TEXT, b"ab")
    assert collect_results(iter([b"a", b"b"])) == (BINARY, b"ab")
    content_type, payload = collect_results(iter([{"a": 1}, "x"]))
    assert content_type == JSON and json.loads(payload) == [{"a": 1}, "x"]


def test_dcf_string_replies_base64_binary_that_is_not_utf8() -> None:
    assert as_text(TEXT, b"ok") == "ok"
    assert as_text(BINARY, b"plain") == "plain"
    assert as_text(BINARY, b"\x89PNG\r\n") == "iVBORw0K"


def test_request_helpers() -> None:
    request = Request(b'{"a": 1}', service="f")
    assert request.text == '{"a": 1}' and request.json() == {"a": 1}
    with pytest.raises(ValueError):
        Request(b"not json").json()
