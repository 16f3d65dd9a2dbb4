from beam_pipelines.dead_letters.cli import main

raise SystemExit(main())
