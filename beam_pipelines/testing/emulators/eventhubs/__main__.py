from beam_pipelines.testing.emulators.eventhubs.broker import main

raise SystemExit(main())
