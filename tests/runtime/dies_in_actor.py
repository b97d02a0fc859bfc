"""A flow module that kills the actor process importing it (exit code 9), and only that.

A worker actor imports its modules before it reports READY, so a supervisor serving this
module sees its workers die before READY; the test process itself never imports it.
"""

import os
import sys
from dataclasses import dataclass

from ergon_actors import flow, flow_type

if sys.argv[0].endswith(os.path.join("runtime", "entry.py")):
    os._exit(9)


@dataclass
@flow_type
class Unreachable:
    @flow
    async def run(self) -> None:
        pass
