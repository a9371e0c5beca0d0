"""The entry layer: the ``seqcast`` command line, above flows, deployments, tasks, the core and storage."""
