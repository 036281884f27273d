"""``python -m analysis.regions``: the Regions pipeline from the command line (see analysis.regions.pipeline)."""

from analysis.regions.pipeline import main

raise SystemExit(main())
