"""`python -m grutext` runs the CLI."""

from grutext.cli import main

main()
