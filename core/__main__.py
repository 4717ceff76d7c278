from core.tools.cli import main

raise SystemExit(main())
