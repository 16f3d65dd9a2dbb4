"""The shared pipeline skeleton: sources, sinks, dead letters, metrics, run() and main()."""
