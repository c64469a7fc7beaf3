from earmark.cli import cli

cli()
