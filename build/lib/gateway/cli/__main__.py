"""`python -m gateway.cli`: the `visionrag` command without its installed script."""

from gateway.cli import app

app()
