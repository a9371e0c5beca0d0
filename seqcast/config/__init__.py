"""Configuration: the ``SEQCAST_*`` settings, each flow's parameter model, and the safe names of ids and variants."""
