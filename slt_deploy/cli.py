"""`slt-deploy` command line. Each command lives in slt_deploy/commands/<name>.py and exposes `command`.
User mistakes (SltError) print one line and exit 2; never a traceback.

Commands load lazily: `slt-deploy --help` reads the one-line summaries below and imports no command module (so no
torch: ~0.1 s instead of seconds, bench/startup.py); `slt-deploy NAME ...` imports only slt_deploy.commands.NAME."""
from __future__ import annotations

import importlib
import sys

import click

from .errors import SltError

# Explicit list: a command is added by writing its module and naming it here with its one-line summary for --help
# (tests/test_api.py checks that every name has its module).
COMMANDS = {
    "train": "Train a recipe (packaged name or yaml path) into a checkpoint.",
    "eval": "Accuracy of a checkpoint on its dataset's test split.",
    "ticket": "Find a sparse or binarized lottery ticket of a checkpoint.",
    "export": "Lower a checkpoint through NIR and write a target's artifact.",
    "targets": "List the registered targets.",
    "verify": "Compare an artifact with its PyTorch reference on real test data.",
    "inspect": "Describe a checkpoint or artifact: layers, sparsity, bits, bytes.",
    "run": "Run an artifact on an image or on test data.",
    "demo": "The whole pipeline: ticket, export, verify, profile.",
    "profile": "Measured latency and modelled energy, side by side.",
    "finetune": "Fine-tune a checkpoint with a target's fixed-point arithmetic in the loop (Loihi).",
    "import": "Read an NIR graph written by another tool (snntorch, ...) as our .nir, ready to export.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they run, not when the group is built or --help is shown."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f".commands.{name}", __package__).command

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="slt-deploy")
def cli():
    """slt-deploy: spiking lottery tickets -> NIR -> Loihi / ONNX / packed-bit, verified and profiled."""


def main(argv=None):
    """Run one command; under torchrun (WORLD_SIZE > 1) a worker that started a process group leaves through
    train.exit_distributed with the command's exit code (see there why not through the interpreter's exit)."""
    try:
        _main(argv)
    except SystemExit as e:
        _end_worker(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
        raise
    _end_worker(0)


def _end_worker(code: int):
    """A torchrun worker whose process group is up leaves here through train.exit_distributed (it never returns);
    any other process returns (no torch import for single-process runs)."""
    import os

    if os.environ.get("WORLD_SIZE", "1") in ("", "1") or "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        from .train import exit_distributed

        exit_distributed(code)


def _main(argv=None):
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
