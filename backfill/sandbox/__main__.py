"""`python -m backfill.sandbox`: the same as `backfill sandbox`."""

from backfill.sandbox.command import main

main()
