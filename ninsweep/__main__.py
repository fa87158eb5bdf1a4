import sys

from ninsweep.cli import main

sys.exit(main())
