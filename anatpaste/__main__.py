from anatpaste.cli import main

raise SystemExit(main())
