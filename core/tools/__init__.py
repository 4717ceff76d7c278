"""The tooling layer: everything around runs that the library (core.lib) does not need. The command line
(`python -m core`, ./reproduce.sh) with its arguments; running jobs in their folders (jobs, locks, checkpoints,
executors, packing, distributed); and reading runs (plan, bench, report, reported, verify, gpucheck)."""
