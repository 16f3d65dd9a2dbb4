from beam_pipelines.testing.emulators.pubsub.server import main

raise SystemExit(main())
