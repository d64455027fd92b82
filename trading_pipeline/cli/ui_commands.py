"""``tp ui``: the Dagster UI and daemon on the project's instance."""

from __future__ import annotations

import os
import shutil

import typer

from trading_pipeline import settings
from trading_pipeline.cli.app import app, fail
from trading_pipeline.cli.instance import ensure_dagster_home


@app.command("ui")
def ui(
    host: str = typer.Option("127.0.0.1", help="Address the webserver listens on."),
    port: int = typer.Option(3000, help="Port the webserver listens on."),
) -> None:
    """Start the Dagster webserver and daemon (`dagster dev`) with the code location loaded."""
    ensure_dagster_home()
    dagster = shutil.which("dagster")
    if dagster is None:
        raise fail("the `dagster` command is not installed in this environment")
    workspace = settings.default_instance_yaml().parent / "workspace.yaml"
    os.chdir(workspace.parent)
    os.execv(dagster, [dagster, "dev", "-w", str(workspace), "-h", host, "-p", str(port)])
