import sys

from dalistream.cli import main

sys.exit(main())
