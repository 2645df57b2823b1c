from netscand.cli.main import main

raise SystemExit(main())
