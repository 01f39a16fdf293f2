"""%load_ext dcf_jupyter, %%dcf_function and %dcf in a real IPython shell, against a real gateway."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import textwrap
from pathlib import Path

import pytest
from support import eventually, run_cli

from dcf_jupyter.host.pids import pid_alive

pytest.importorskip("IPython")
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from dcf_jupyter.errors import DeployError, FunctionError, FunctionNotFound
from dcf_jupyter.notebook._display import BytesResult, JsonList, TextResult, boxes
from dcf_jupyter.notebook._session import Session, source_of

HELLO = "class Handler:\n    def __call__(self, req):\n        return 'Hello DCF'\n"


NEEDS_PILLOW = pytest.mark.skipif(importlib.util.find_spec("PIL") is None,
                                  reason="images are shown through Pillow: the [notebook] extra")


@pytest.fixture(scope="module")
def ip(gateway, tmp_path_factory):
    shell = start_ipython() or get_ipython()  # one test shell per process, whichever module starts it
    shell.run_line_magic("load_ext", "dcf_jupyter")
    shell.run_line_magic("dcf", f"gateway {gateway.address}")
    workspace = tmp_path_factory.mktemp("workspace")
    shell.run_line_magic("config", f"DcfMagics.workspace = {str(workspace)!r}")
    shell.user_ns["WORKSPACE"] = workspace
    yield shell
    for name in ("nb-listed", "nb-mapped", "nb-grammar", "nb-hello", "nb-boom", "nb-image", "nb-boxes", "nb-pid",
                 "api-src", "api-class", "nb-picky", "nb-bound", "nb-taken"):
        with contextlib.suppress(FunctionNotFound):  # not every test deploys every name
            gateway.client.delete(name)


def cell(ip, source: str):
    """Run a cell, failing the test on an error."""
    result = ip.run_cell(textwrap.dedent(source))
    assert result.success, result.error_in_exec or result.error_before_exec
    return result


def test_loading_twice_is_harmless(ip) -> None:
    ip.run_line_magic("load_ext", "dcf_jupyter")
    assert "dcf_function" in ip.magics_manager.magics["cell"]
    assert "dcf" in ip.magics_manager.magics["line"]
    assert list(ip.magics_manager.registry).count("DcfMagics") == 1


def test_cell_becomes_a_deployed_function_and_a_callable(ip, gateway, capsys) -> None:
    cell(ip, "%%dcf_function nb-hello\n" + HELLO)
    assert "Deployed nb-hello: 1 replica on the local backend" in capsys.readouterr().out
    proxy = ip.user_ns["nb_hello"]
    assert proxy(b"hi") == "Hello DCF"
    folder = Path(ip.user_ns["WORKSPACE"]) / "nb-hello"
    assert (folder / "src" / "handler.py").read_text() == HELLO
    assert (folder / "config.yaml").exists() and (folder / "requirements.txt").exists()
    # The folder is a real DCF function: the CLI's loader reads it.
    from dcf_jupyter.definition.spec import load_config

    assert load_config(folder / "config.yaml").function("nb-hello").handler.name == "Handler"
    assert "Hello DCF" in str(ip.run_line_magic("dcf", "call nb-hello"))


def test_rerunning_the_cell_redeploys_in_place(ip, gateway) -> None:
    version = ("%%dcf_function nb-pid\nimport os\nclass Handler:\n    def __call__(self, req):\n"
               "        return 'V ' + str(os.getpid())\n")
    cell(ip, version.replace("V", "v1"))
    first = ip.user_ns["nb_pid"]()
    cell(ip, version.replace("V", "v2"))
    second = ip.user_ns["nb_pid"]()
    assert first.startswith("v1 ") and second.startswith("v2 ")
    assert first.split()[1] != second.split()[1]
    info = gateway.client.get("nb-pid")
    assert info.replicas == info.available_replicas == 1
    # The old worker is gone shortly after: the redeploy returned as soon as the new one served.
    eventually(lambda: not pid_alive(int(first.split()[1])), 2, "the old worker gone", every=0.02)


def test_syntax_error_points_at_the_cell_line(ip, capsys) -> None:
    result = ip.run_cell("%%dcf_function nb-broken\nimport os\nclass Handler(:\n    pass\n")
    assert not result.success
    err = capsys.readouterr().err
    assert "UsageError: %%dcf_function nb-broken cell, line 3: syntax error" in err
    assert not (Path(ip.user_ns["WORKSPACE"]) / "nb-broken").exists()


def test_missing_handler_is_a_usage_error(ip, capsys) -> None:
    ip.run_cell("%%dcf_function nb-nohandler\nclass Other:\n    pass\n")
    assert "defines no 'Handler'" in capsys.readouterr().err


def test_bad_name_is_a_usage_error(ip) -> None:
    with pytest.raises(UsageError, match="invalid function name"):
        ip.run_cell_magic("dcf_function", "Bad_Name", HELLO)


def test_dcf_needs_says_which_extra_brings_what_is_missing(ip) -> None:
    assert ip.run_line_magic("dcf", "needs json yaml") is None
    with pytest.raises(UsageError) as refused:
        ip.run_line_magic("dcf", "needs json no_such_module_xyz --extra widgets")
    assert str(refused.value).startswith("this notebook needs no_such_module_xyz, which this kernel's Python (")
    assert "lacks: pip install 'dcf-jupyter[widgets]' into it (in a clone: pip install -e '.[widgets]'), then " \
        "restart the kernel" in str(refused.value)


def test_dcf_and_the_cli_share_one_grammar(ip, gateway, capsys, tmp_path: Path) -> None:
    """call, list, logs, delete and scale are declared once (dcf_jupyter.commands): the same arguments, options,
    help and sentences in `%dcf` and `dcf function`."""
    cell(ip, "%%dcf_function nb-grammar\nclass Handler:\n    def __call__(self, req):\n        return req.text\n")
    request = tmp_path / "request.txt"
    request.write_text("from a file")
    assert str(ip.run_line_magic("dcf", "call nb-grammar two words")) == "two words"
    assert str(ip.run_line_magic("dcf", "call nb-grammar -d typed")) == "typed"
    assert str(ip.run_line_magic("dcf", f"call nb-grammar --file {request}")) == "from a file"
    for how in (("two", "words"), ("-d", "two words")):
        cli = run_cli("-g", gateway.address, "function", "call", "nb-grammar", *how)
        assert cli.returncode == 0 and cli.stdout == b"two words\n", cli.stderr
    with pytest.raises(UsageError, match="give the request one way: DATA or -d, not both"):
        ip.run_line_magic("dcf", "call nb-grammar x -d y")
    assert "give the request one way: DATA or -d, not both" in run_cli(
        "-g", gateway.address, "function", "call", "nb-grammar", "x", "-d", "y").stderr.decode()
    sentence = "replicas must be a whole number from 0 to"
    with pytest.raises(UsageError, match=sentence):
        ip.run_line_magic("dcf", "scale nb-grammar -1")
    assert sentence in run_cli("-g", gateway.address, "function", "scale", "nb-grammar", "-1").stderr.decode()
    capsys.readouterr()
    for command in ("call", "list", "logs", "delete", "scale"):
        ip.run_line_magic("dcf", f"{command} --help")
        magic_help = capsys.readouterr().out
        cli_help = run_cli("function", command, "--help").stdout.decode()
        options = [text.split("Options:", 1)[1].split() for text in (magic_help, cli_help)]
        assert options[0] == options[1], (command, magic_help, cli_help)
    ip.run_line_magic("dcf", "delete nb-grammar")


def test_a_mistyped_option_names_the_one_meant(ip) -> None:
    with pytest.raises(UsageError, match=r"^%%dcf_function: no option --gpus \(did you mean --gpu\?\)$"):
        ip.run_cell_magic("dcf_function", "typo --gpus 1 --no-deploy", HELLO)


def test_handler_error_shows_the_remote_traceback_with_cell_lines(ip, capsys) -> None:
    cell(ip, """\
        %%dcf_function nb-boom
        class Handler:
            def __call__(self, req):
                value = req.text
                raise RuntimeError("cannot handle " + value)
    """)
    capsys.readouterr()
    result = ip.run_cell("nb_boom(b'this')")
    assert isinstance(result.error_in_exec, FunctionError)
    err = capsys.readouterr().err
    assert 'File "<%%dcf_function nb-boom cell>", line 5, in __call__' in err
    assert 'raise RuntimeError("cannot handle " + value)' in err
    sentence = "FunctionError: RuntimeError: cannot handle this [INTERNAL]"
    assert err.startswith(sentence), "the sentence comes first, the traceback after it"
    assert "nb_boom(b'this')" not in err  # no local client-side stack


def test_dcf_list_logs_delete_status(ip, gateway, capsys) -> None:
    cell(ip, "%%dcf_function nb-listed\n" + HELLO)
    table = ip.run_line_magic("dcf", "list")
    assert "nb-listed" in repr(table) and '<td style="text-align:left">nb-listed</td>' in table._repr_html_()
    logs = ip.run_line_magic("dcf", "logs nb-listed --lines 5")
    assert "ready" in logs
    ip.run_line_magic("dcf", "status")
    assert f"gateway at {gateway.address}" in capsys.readouterr().out
    ip.run_line_magic("dcf", "delete nb-listed")
    assert "Deleted: nb-listed" in capsys.readouterr().out
    with pytest.raises(UsageError):
        ip.run_line_magic("dcf", "")
    with pytest.raises(UsageError):
        ip.run_line_magic("dcf", "frobnicate")


def test_a_cells_function_maps_and_spawns_and_dcf_result_fetches_by_id(ip, gateway, capsys) -> None:
    cell(ip, "%%dcf_function nb-mapped\n"
             "class Handler:\n    def __call__(self, req):\n        return req.text.upper()\n")
    assert list(ip.user_ns["nb_mapped"].map(["a", "b", "c"], progress=False)) == ["A", "B", "C"]
    job = ip.user_ns["nb_mapped"].spawn("later")
    assert ip.run_line_magic("dcf", f"result {job.id} --timeout 30") == "LATER"
    ip.run_line_magic("dcf", f"result {job.id} --status")
    assert f"{job.id} (nb-mapped): done, 1 of 1 done" in capsys.readouterr().out
    whole = ip.user_ns["nb_mapped"].spawn_map(["x", "y"])
    assert ip.run_line_magic("dcf", f"result {whole.id} --timeout 30") == ["X", "Y"]


def test_dcf_secret_asks_each_value_and_never_shows_it(ip, gateway, capsys, monkeypatch) -> None:
    """Typing is what this machine cannot do: getpass is answered here, the rest is the real magic and gateway."""
    asked = []

    def typed(prompt: str) -> str:
        asked.append(prompt)
        return f"typed-{len(asked)}-never-shown"

    monkeypatch.setattr("getpass.getpass", typed)
    ip.run_line_magic("dcf", "secret create nb-key API_KEY PASSWORD")
    assert asked == ["nb-key API_KEY: ", "nb-key PASSWORD: "]
    assert capsys.readouterr().out.strip() == "Created: secret nb-key (2 keys)"
    table = ip.run_line_magic("dcf", "secret list")
    assert "API_KEY, PASSWORD" in repr(table) and "never-shown" not in repr(table) + table._repr_html_()
    with pytest.raises(UsageError, match="type its value when asked") as refused:
        ip.run_line_magic("dcf", "secret create nb-key API_KEY=sk-in-the-line")
    assert "sk-in-the-line" not in str(refused.value)
    ip.run_line_magic("dcf", "secret delete nb-key")
    assert capsys.readouterr().out.strip() == "Deleted: secret nb-key"
    assert "nb-key" not in repr(ip.run_line_magic("dcf", "secret list"))


def png_bytes(color: str = "red", size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@NEEDS_PILLOW
def test_image_replies_display_as_images(ip, tmp_path: Path) -> None:
    cell(ip, """\
        %%dcf_function nb-image
        import base64
        class Handler:
            def __call__(self, req):
                return base64.b64encode(req.input).decode() if req.text == "" else req.input
    """)
    png = png_bytes()
    image = ip.user_ns["nb_image"](png)
    bundle, _ = ip.display_formatter.format(image)
    assert bundle["image/png"] == base64.b64encode(png).decode()
    # Its text beside the picture says what it is, not every byte (IPython's own bytes printer would).
    assert bundle["text/plain"] == f"<image/png, {len(png)} bytes>"
    as_text = ip.display_formatter.format(TextResult(base64.b64encode(png).decode()))[0]
    assert as_text["text/plain"] == f"<image/png, {len(png)} bytes>" and "image/png" in as_text
    assert ip.display_formatter.format(BytesResult(b"ab"))[0]["text/plain"] == "b'ab'"  # other bytes as bytes
    # A file sent with %dcf call --file comes back as bytes too.
    path = tmp_path / "red.png"
    path.write_bytes(png)
    from_file = ip.run_line_magic("dcf", f"call nb-image --file {path}")
    assert "image/png" in ip.display_formatter.format(from_file)[0]


@NEEDS_PILLOW
def test_base64_png_text_displays_as_an_image() -> None:
    png = png_bytes("blue")
    text = TextResult(base64.b64encode(png).decode())
    bundle = text._repr_mimebundle_()
    assert bundle is not None and base64.b64decode(bundle["image/png"]) == png


@NEEDS_PILLOW
def test_ssd_boxes_draw_on_the_request_image(ip) -> None:
    cell(ip, """\
        %%dcf_function nb-boxes
        class Handler:
            def __call__(self, req):
                return [{"class": "12", "confidence": "0.99", "xmin": "1", "ymin": "1", "xmax": "30", "ymax": "20"}]
    """)
    jpeg = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (40, 30), "white").save(jpeg, "JPEG")
    result = ip.user_ns["nb_boxes"](jpeg.getvalue())
    assert isinstance(result, JsonList) and result[0]["class"] == "12"
    bundle, _ = ip.display_formatter.format(result)
    assert "image/png" not in bundle  # one picture, saved once
    drawn = Image.open(io.BytesIO(base64.b64decode(bundle["image/jpeg"]))).convert("RGB")
    assert drawn.size == (40, 30)
    assert min(drawn.getpixel((1, 10))) < 200  # the box's edge was drawn
    assert min(drawn.getpixel((20, 25))) > 235  # outside the box (and its caption) stays white


@NEEDS_PILLOW
def test_boxes_helper_accepts_json_text_and_dcf_strings() -> None:
    picture = boxes(png_bytes("white", (50, 50)),
                    '[{"class": "15", "confidence": "0.8", "xmin": "10", "ymin": "10", "xmax": "40", "ymax": "45"}]')
    assert picture.size == (50, 50) and picture.getpixel((10, 30)) != (255, 255, 255)


@NEEDS_PILLOW
def test_drawn_boxes_show_once_as_a_jpeg_no_larger_than_the_notebook_needs() -> None:
    from PIL import Image

    picture = boxes(png_bytes("white", (2000, 1000)),
                    [{"class": "15", "confidence": "0.8", "xmin": "10", "ymin": "10", "xmax": "400", "ymax": "450"}])
    assert picture.size == (2000, 1000)  # the drawing keeps the photo's size...
    # What a Jupyter kernel's formatters ask of it: no PNG (a kernel skips None), one JPEG.
    assert picture._repr_png_() is None
    assert Image.open(io.BytesIO(picture._repr_jpeg_())).size == (1024, 512)  # ...its view less


def test_captions_of_crowded_boxes_never_hide_each_other() -> None:
    from dcf_jupyter.notebook._display import place_captions

    # Ten people side by side, boxes 30 px apart, captions 80 px wide: at most one row of captions fits above.
    crowd = [(10.0 + 30 * i, 100.0, 40.0 + 30 * i, 300.0) for i in range(10)]
    spots = place_captions(crowd, [(80.0, 20.0)] * 10, (400.0, 400.0))
    for i, a in enumerate(spots):
        assert a[0] >= 0 and a[2] <= 400 and a[1] >= 0 and a[3] <= 400, a
        for b in spots[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    # A lone box's caption sits just above it, left-aligned.
    assert place_captions([(50.0, 60.0, 90.0, 120.0)], [(30.0, 12.0)], (200.0, 200.0)) == [(50.0, 48.0, 80.0, 60.0)]


def test_a_deploy_shown_by_its_progress_is_not_repeated_as_the_cells_result(ip) -> None:
    from IPython.utils.capture import capture_output

    from dcf_jupyter.client import FunctionInfo
    from dcf_jupyter.notebook._session import AnnouncedDeploy

    info = FunctionInfo("f", "", 0, 1, 1, "Ready", "local")
    with capture_output() as same_cell:
        AnnouncedDeploy(info, "Deployed: f", cell=ip.execution_count)._ipython_display_()
    with capture_output() as later_cell:  # the same result shown again in another cell: its sentence
        AnnouncedDeploy(info, "Deployed: f", cell=ip.execution_count - 1)._ipython_display_()
    assert same_cell.outputs == [] and [o.data for o in later_cell.outputs] == [{"text/plain": "Deployed: f"}]


def test_other_json_displays_as_json() -> None:
    from dcf_jupyter.client import Reply
    from dcf_jupyter.notebook._display import as_result

    result = as_result(Reply(b'{"a": [1, 2]}', "application/json"))
    assert result == {"a": [1, 2]}
    assert result._repr_mimebundle_()["application/json"] == {"a": [1, 2]}


def test_python_api_from_source_and_from_class(ip, gateway, tmp_path: Path, capsys) -> None:
    import dcf_jupyter

    proxy = dcf_jupyter.function("api-src",
                                 "class Handler:\n    def __call__(self, req):\n        return req.text[::-1]\n")
    assert proxy(b"abc") == "cba"
    # Its progress names the call that made it, and no variable: function() binds none.
    said = capsys.readouterr().out
    assert "[dcf_jupyter.function('api-src')] Deployed api-src: 1 replica on" in said and "(data)" not in said, said
    assert repr(proxy).endswith(": call it with (data)>")
    cell(ip, "%%dcf_function nb-bound\n" + HELLO)  # the magic binds nb_bound, and says so
    assert "; call nb_bound(data)" in capsys.readouterr().out
    assert repr(ip.user_ns["nb_bound"]).endswith(": call nb_bound(data)>")
    ip.run_cell(textwrap.dedent("""\
        import json

        class Shout:
            def __call__(self, req):
                return json.dumps({"loud": req.text.upper()})
    """))
    source = source_of(ip.user_ns["Shout"])
    assert source.startswith("import json") and "Handler = Shout" in source
    shout = dcf_jupyter.function("api-class", ip.user_ns["Shout"])
    assert shout(b"hey") == '{"loud": "HEY"}'


def test_a_cell_says_before_it_replaces_a_function_deployed_from_elsewhere(ip, gateway, capsys,
                                                                          make_function) -> None:
    """A shell's (or another notebook's) function of the same name is replaced only after a line saying so; the
    cell's own function, deployed again, is not announced."""
    theirs = make_function("nb-taken", "class Handler:\n    def __call__(self, req):\n        return 'theirs'\n")
    gateway.client.deploy(theirs)
    capsys.readouterr()
    cell(ip, "%%dcf_function nb-taken\n" + HELLO)
    said = capsys.readouterr().out
    assert f"nb-taken is deployed on this gateway already, from {theirs.resolve()}: this deploy replaces it" in said
    assert said.index("is deployed on this gateway already") < said.index("Updated nb-taken"), said
    cell(ip, "%%dcf_function nb-taken\n" + HELLO)
    assert "already" not in capsys.readouterr().out


def test_no_deploy_only_writes_the_folder_and_says_how_to_deploy_it(ip, gateway, capsys) -> None:
    cell(ip, "%%dcf_function nb-later --no-deploy --gpu 1 --memory 2G --requirements numpy\n" + HELLO)
    folder = Path(ip.user_ns["WORKSPACE"]) / "nb-later"
    said = capsys.readouterr().out
    assert f"Wrote {folder} (not deployed): `nb_later.deploy()` deploys it" in said, said
    with pytest.raises(FunctionNotFound, match=r"function 'nb-later' is not deployed .*; `nb_later\.deploy\(\)` "
                                               "deploys it from its folder"):
        ip.user_ns["nb_later"](b"too soon")
    from dcf_jupyter.definition.spec import load_config

    spec = load_config(folder).function("nb-later")
    assert str(spec.limits.gpu) == "1" and spec.limits.memory == "2G" and spec.wants_cuda
    assert "numpy" in (folder / "requirements.txt").read_text()
    assert "nb-later" not in {f.name for f in gateway.client.list()}
    cell(ip, "%%dcf_function nb-later --no-deploy --concurrency 3 --timeout 5 --secrets api-key\n" + HELLO)
    later = load_config(folder).function("nb-later")
    assert (later.concurrency, later.timeout, later.secrets) == (3, 5.0, ["api-key"])
    failed = ip.run_cell("%%dcf_function nb-later --no-deploy --concurrency 0\n" + HELLO)
    assert "concurrency" in str(failed.error_in_exec) and "1" in str(failed.error_in_exec), failed.error_in_exec


def test_autoscaling_flags_write_config_yamls_keys_and_bad_ones_are_sentences(ip, capsys) -> None:
    from dcf_jupyter.definition.spec import load_config

    cell(ip, "%%dcf_function nb-elastic --no-deploy --backend ray --max-replicas 4 --target-ongoing-requests 1.5\n"
         + HELLO)
    spec = load_config(Path(ip.user_ns["WORKSPACE"]) / "nb-elastic").function("nb-elastic")
    assert spec.backend == "ray" and spec.autoscaling is not None
    assert spec.autoscaling.as_dict() == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 1.5}
    for flags, sentence in [
        ("--min-replicas 2", "%%dcf_function nb-elastic: --max-replicas: missing: autoscaling needs the most "
                             "replicas it may run"),
        ("--replicas 2 --max-replicas 3", "--replicas: give either --replicas (a fixed count) or "
                                          "--min-replicas/--max-replicas (autoscaled), not both"),
        ("--min-replicas 3 --max-replicas 2", "%%dcf_function nb-elastic: --max-replicas: is 2, fewer than "
                                              "--min-replicas (3)"),
        ("--gpu two", "%%dcf_function nb-elastic: --gpu: expected a number of GPUs like '1'"),
        ("--runtime cobol", "%%dcf_function nb-elastic: --runtime: unknown runtime 'cobol'"),
    ]:
        ip.run_cell(f"%%dcf_function nb-elastic --no-deploy {flags}\n" + HELLO)
        err = capsys.readouterr().err
        assert sentence in err and "Traceback" not in err, err


def test_the_python_api_takes_autoscaling_keys(ip) -> None:
    import dcf_jupyter
    from dcf_jupyter.definition.spec import load_config
    from dcf_jupyter.errors import ConfigError

    dcf_jupyter.function("api-elastic", HELLO, backend="ray", autoscaling={"max_replicas": 3}, deploy=False)
    spec = load_config(Path(ip.user_ns["WORKSPACE"]) / "api-elastic").function("api-elastic")
    assert spec.autoscaling is not None and spec.autoscaling.as_dict() == {"min_replicas": 1, "max_replicas": 3}
    with pytest.raises(ConfigError, match=r"^dcf_jupyter.function\('api-elastic'\): autoscaling.max_replica: unknown "
                                          r"key \(did you mean 'max_replicas'\?"):
        dcf_jupyter.function("api-elastic", HELLO, autoscaling={"max_replica": 3, "max_replicas": 3}, deploy=False)
    with pytest.raises(ConfigError, match=r"^dcf_jupyter.function\('api-elastic'\): gpu: expected a number of GPUs"):
        dcf_jupyter.function("api-elastic", HELLO, gpu="lots", deploy=False)
    with pytest.raises(TypeError, match=r"takes no keyword gpus= \(did you mean gpu=\?\)"):
        dcf_jupyter.function("api-elastic", HELLO, gpus=1, deploy=False)


def test_autoscaling_flags_deploy_on_the_local_backend_down_to_zero(ip, capsys) -> None:
    import dcf_jupyter
    from dcf_jupyter.definition.spec import load_config

    result = ip.run_cell("%%dcf_function nb-elastic-local --min-replicas 0 --max-replicas 2 --downscale-delay 60\n"
                         + HELLO)
    assert result.success, capsys.readouterr().err
    try:
        spec = load_config(ip.magics_manager.registry["DcfMagics"].session.workspace / "nb-elastic-local").function(
            "nb-elastic-local")
        assert spec.autoscaling is not None
        assert spec.autoscaling.as_dict() == {"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 60.0}
        listed = next(f for f in dcf_jupyter.list_functions() if f.name == "nb-elastic-local")
        assert listed.autoscaling == (0, 2) and listed.replicas_said == "1/1 (autoscaled 0-2)"
    finally:
        dcf_jupyter.delete("nb-elastic-local")


def test_embedded_gateway_starts_when_none_answers_and_stops_with_the_session(tmp_path: Path) -> None:
    import socket

    probe = socket.socket()
    if probe.connect_ex(("127.0.0.1", 32222)) == 0:
        probe.close()
        pytest.skip("a gateway already listens on 127.0.0.1:32222, so no embedded one would start")
    probe.close()
    said: list[str] = []

    class Recorded:  # a progress display that writes where the session's announcements go
        def step(self, label: str, fraction: float) -> None:
            said.append(label)

        def log(self, text: str) -> None:
            pass

        done = fail = log

    session = Session(tmp_path / "ws", announce=said.append)
    try:
        proxy = session.define("embedded-hello", HELLO, progress=Recorded())
        assert proxy() == "Hello DCF"
        assert session.embedded and said and "embedded DCF gateway" in said[0]
        assert said[1] == "writing the function folder", "lines in the order things happened"
        state_dir = session._embedded.state_dir  # type: ignore[union-attr]
        assert state_dir.exists()
    finally:
        session.close()
    assert not state_dir.exists()


def test_module_level_api_follows_the_notebook_session(ip, gateway) -> None:
    import dcf_jupyter
    from dcf_jupyter import client as api

    magics = ip.magics_manager.registry["DcfMagics"]
    assert api.get_client() is magics.session.client()  # not $DCF_GATEWAY's default address
    assert dcf_jupyter.call("echo", b"via the session") == b"via the session"
    assert api.get_client(gateway.address).address == gateway.address  # an explicit address still wins


BAD_INPUT = """\
    %%dcf_function nb-picky
    class Handler:
        def __call__(self, req):
            if not req.input.startswith(b"\\x89PNG"):
                raise ValueError("the request is not a PNG image")
            return "ok"
"""


def test_bad_input_shows_the_sentence_only_and_v_adds_the_traceback(ip, capsys) -> None:
    cell(ip, BAD_INPUT)
    capsys.readouterr()
    result = ip.run_cell("nb_picky(b'text')")
    assert isinstance(result.error_in_exec, FunctionError)
    err = capsys.readouterr().err
    print(err)
    assert err.startswith("FunctionError: ValueError: the request is not a PNG image [INVALID_ARGUMENT]\n")
    assert "Traceback" not in err and "line 5" not in err
    assert "-v" in err, "it says how to see the traceback"
    ip.run_cell("%dcf call nb-picky text -v")
    err = capsys.readouterr().err
    assert err.startswith("FunctionError: ValueError: the request is not a PNG image [INVALID_ARGUMENT]\n")
    assert 'File "<%%dcf_function nb-picky cell>", line 5, in __call__' in err


def test_a_deploy_error_points_at_the_cell_not_the_gateways_copy(ip, capsys) -> None:
    capsys.readouterr()
    result = ip.run_cell(textwrap.dedent("""\
        %%dcf_function nb-broken-init
        class Handler:
            def __init__(self):
                self.model = load_the_model()

            def __call__(self, req):
                return "never"
    """))
    assert isinstance(result.error_in_exec, DeployError)
    err = capsys.readouterr().err
    print(err)
    sentence = "DeployError: nb-broken-init did not start: Handler() raised NameError"
    frame = 'File "<%%dcf_function nb-broken-init cell>", line 4, in __init__'
    assert sentence in err and frame in err and err.index(sentence) < err.index(frame)
    assert "rev-" not in err and "dcf-jupyter/functions" not in err
    # The sentence is said once: the progress line points at it.
    assert err.count("Handler() raised NameError") == 1 and "[%%dcf_function nb-broken-init] failed (the error " \
        "below says why)" in err, err


def test_module_level_deploy_shows_progress_and_call_returns_what_a_script_gets(ip, capsys, make_function) -> None:
    import dcf_jupyter

    folder = make_function("api-faces", """
        class Handler:
            def __call__(self, req):
                return [{"class": "15", "label": "person", "confidence": 0.9,
                         "xmin": 1, "ymin": 2, "xmax": 30, "ymax": 40}]
    """)
    capsys.readouterr()
    dcf_jupyter.deploy(folder)
    shown = capsys.readouterr()
    assert "[deploy api-faces]" in shown.out + shown.err, "the same progress display as %%dcf_function"
    try:
        from_api = dcf_jupyter.call("api-faces", b"an image")
        from_script = dcf_jupyter.Client(ip.magics_manager.registry["DcfMagics"].session.client().address).call(
            "api-faces", b"an image")
        assert type(from_api) is type(from_script) is list and from_api == from_script  # no notebook-only type
        assert from_api[0]["label"] == "person"
        from_proxy = dcf_jupyter.FunctionProxy(ip.magics_manager.registry["DcfMagics"].session, "api-faces")(
            b"an image")
        assert type(from_proxy) is JsonList and from_proxy == from_api  # the cell's callable displays richly
    finally:
        dcf_jupyter.delete("api-faces")


def test_scratch_dir_is_one_folder_per_kernel_removed_when_it_exits() -> None:
    """Tutorials put generated media there instead of a new /tmp folder per run."""
    import subprocess
    import sys

    code = ("import dcf_jupyter\nfolder = dcf_jupyter.scratch_dir()\nassert folder == dcf_jupyter.scratch_dir()\n"
            "(folder / 'clip.avi').write_bytes(b'x')\nprint(folder)\n")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    folder = Path(ran.stdout.strip())
    assert folder.name.startswith("dcf-media-") and not folder.exists()
