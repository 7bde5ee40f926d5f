from qmtl.cli import main

raise SystemExit(main())
