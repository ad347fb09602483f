from lab.ablate import main

raise SystemExit(main())
