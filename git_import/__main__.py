from git_import.cli import main

raise SystemExit(main())
