"""`python -m qbench` runs the command line."""

from qbench.cli import main

raise SystemExit(main())
