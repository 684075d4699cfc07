import sys

from tools.local.stack import main

sys.exit(main())
