"""Start the LungCT Viewer: ``python main.py [PATH] [--model M] [--series UID] [--screenshot OUT.png]``."""

from lungct_viewer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
