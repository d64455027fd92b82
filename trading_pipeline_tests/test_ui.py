"""`tp ui` (what `make ui` runs) starts the Dagster webserver and daemon with the code
location loaded and no load errors, on the project's instance."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

LOCATION_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
    } } } }
"""

# ##### FIXTURES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def ui_process(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TP_LEDGER_URL")}
    env.update(TP_HOME=str(tmp_path), PATH=f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}")
    process = subprocess.Popen(
        [sys.executable, "-m", "trading_pipeline.cli.main", "ui", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield port, process, tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# ##### TESTS


def test_ui_loads_the_code_location_without_errors(ui_process):
    port, process, home = ui_process
    deadline = time.monotonic() + 120
    entries = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
        try:
            workspace = _graphql(port, LOCATION_QUERY)["data"]["workspaceOrError"]
            entries = workspace["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                break
        except OSError:
            pass
        time.sleep(1)
    assert entries, "the webserver never answered"
    [entry] = entries
    assert entry["name"] == "trading_pipeline"
    assert entry["loadStatus"] == "LOADED"
    assert entry["locationOrLoadError"]["__typename"] != "PythonError", entry["locationOrLoadError"]
    # The UI runs on the project's instance, created under the project home.
    assert (home / ".dagster_home" / "dagster.yaml").is_file()
