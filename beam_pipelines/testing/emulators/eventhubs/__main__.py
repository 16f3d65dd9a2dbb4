from beam_pipelines.testing.emulators.eventhubs.cli import main

raise SystemExit(main())
