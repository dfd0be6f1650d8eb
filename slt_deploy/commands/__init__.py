"""One module per CLI command; each defines `command` (a click.Command). Registered in slt_deploy/cli.py."""
