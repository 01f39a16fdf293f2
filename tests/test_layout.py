"""The layout's promises: a kernel loads no gateway server, backend or worker code; the public face is typed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KERNEL_SIDE = textwrap.dedent("""
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dcf_jupyter")
    shell.run_line_magic("dcf", "gateway " + sys.argv[1])
    shell.run_line_magic("config", "DcfMagics.workspace = " + repr(sys.argv[2]))
    cell = "%%dcf_function layout-probe\\nclass Handler:\\n    def __call__(self, req):\\n        return 'ok'\\n"
    result = shell.run_cell(cell)
    assert result.success, result.error_in_exec
    assert shell.run_cell("layout_probe()").result == "ok"
    shell.run_line_magic("dcf", "delete layout-probe")
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("dcf_jupyter"))))
""")


def test_a_kernel_loads_no_gateway_server_backend_or_worker_module(gateway, tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    result = subprocess.run([sys.executable, "-c", KERNEL_SIDE, gateway.address, str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    print("\n".join(loaded))
    assert "dcf_jupyter.notebook.magics" in loaded and "dcf_jupyter.client.core" in loaded
    server_side = [m for m in loaded if m.startswith(("dcf_jupyter.backends", "dcf_jupyter.worker"))
                   or (m.startswith("dcf_jupyter.gateway") and m not in ("dcf_jupyter.gateway",
                                                                          "dcf_jupyter.gateway.control"))]
    assert server_side == [], "the kernel imported gateway-side code"


PUBLIC_API = textwrap.dedent("""
    import dcf_jupyter
    from dcf_jupyter import client

    reveal_type(dcf_jupyter.call)
    reveal_type(dcf_jupyter.call("f", b"x"))
    reveal_type(dcf_jupyter.deploy)
    reveal_type(dcf_jupyter.list_functions())
    reveal_type(dcf_jupyter.function)
    reveal_type(dcf_jupyter.Client("127.0.0.1:32222").call_reply("f"))
    reveal_type(dcf_jupyter.FunctionError("x").detail)
    reveal_type(dcf_jupyter.get_client())
    reveal_type(client.stream("f", [b"a"]))
    reveal_type(dcf_jupyter.boxes)
""")


def test_the_public_api_is_typed_not_any(tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api")
    snippet = tmp_path / "uses_api.py"
    snippet.write_text(PUBLIC_API)
    out, err, _ = mypy.run([str(snippet), "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                            "--python-executable", sys.executable])
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed type is" in line]
    print("\n".join(revealed))
    assert len(revealed) == PUBLIC_API.count("reveal_type"), out + err
    assert not [r for r in revealed if r.strip('"') == "Any"], out
    assert revealed[0].startswith('"def (name: str, data: Any =') and "-> str | bytes" in revealed[0]
    assert revealed[3] == '"list[dcf_jupyter.client.core.FunctionInfo]"'
    assert "FunctionProxy" in revealed[4] and revealed[5] == '"dcf_jupyter.client.core.Reply"'
    assert revealed[6] == '"str"' and revealed[7] == '"dcf_jupyter.client.core.Client"'
    assert revealed[9].endswith('-> PIL.Image.Image"')
