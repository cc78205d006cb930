from osmium.cli import main

raise SystemExit(main())
