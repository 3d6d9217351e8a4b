"""The `vinterp` command line: parses options and calls one library function per command.

Library errors that a user can fix (bad input, missing files) are raised as `UserError`
subclasses or the modules' own error types and printed as one line with a non-zero exit.
"""

from __future__ import annotations

import sys

import click


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vinterp")
def main() -> None:
    """vinterp: smooth slow motion and high-frame-rate video by frame interpolation."""


# --- prepare ---------------------------------------------------------------------------------
# (owned by the data_prep work: options parsed here, all logic in data_prep.prepare)


# --- train -----------------------------------------------------------------------------------
# (owned by the training work: options parsed here, all logic in vinterp.train)


# --- upsample --------------------------------------------------------------------------------
# (owned by the inference work: options parsed here, all logic in vinterp.inference)


# --- evaluate --------------------------------------------------------------------------------
# (owned by the evaluation work: options parsed here, all logic in vinterp.evaluate)


if __name__ == "__main__":
    main()
