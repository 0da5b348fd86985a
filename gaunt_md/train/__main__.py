import sys

from gaunt_md.train.cli import main

sys.exit(main())
