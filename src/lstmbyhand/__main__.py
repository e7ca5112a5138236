"""`python -m lstmbyhand ...` runs the command-line tool."""

from lstmbyhand.cli import main

raise SystemExit(main())
