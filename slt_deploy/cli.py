"""`slt-deploy` command line. Each command lives in slt_deploy/commands/<name>.py and exposes `command`.
User mistakes (SltError) print one line and exit 2; never a traceback."""
from __future__ import annotations

import importlib
import sys

import click

from .errors import SltError

# Explicit list: a command is added by writing its module and naming it here.
COMMANDS = ["train", "eval", "ticket", "export", "targets", "verify", "inspect", "run", "demo", "profile"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slt-deploy")
def cli():
    """slt-deploy: spiking lottery tickets -> NIR -> Loihi / ONNX / packed-bit, verified and profiled."""


for _name in COMMANDS:
    cli.add_command(importlib.import_module(f".commands.{_name}", __package__).command)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="slt-deploy", standalone_mode=False)
    except SltError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # bad option/argument: one line like every other user mistake
        cmd = e.ctx.command_path if e.ctx else "slt-deploy"
        click.echo(f"error: {e.format_message()} (fix: see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OSError as e:  # the file system said no (full disk, read-only, permissions): not a bug, no traceback
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        click.echo(f"error: cannot access{where} ({e.strerror or e}) (fix: check the path, its permissions and "
                   "free space)", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
