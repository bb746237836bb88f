"""python -m okaflow"""

import sys

from okaflow._cli import main

sys.exit(main())
