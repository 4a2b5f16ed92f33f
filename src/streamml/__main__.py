"""``python -m streamml`` runs the command line."""

from streamml.cli.main import main

main()
