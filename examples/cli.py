"""The ``bigdl-medimg`` command line as a spark-submit script.

    spark-submit --master yarn --jars "$JARS" examples/cli.py train --task knee_cartilage --data ... --out ...

Every subcommand and option of ``bigdl-medimg`` works; spark-submit's own
options (master, memory, jars, archives) apply to the session it creates.
"""
import sys

from bigdl_medimg.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
