"""Public API facts that other parts must agree with (the scenario files name device groups).

Azure Sphere's reference: a device group's name holds letters, digits and spaces, and is
unique within its product whatever its case.
"""

from __future__ import annotations

import re

GROUP_NAME_MAX = 50
#: Letters and digits, single spaces between words; no leading or trailing space.
GROUP_NAME_RE = re.compile(rf"(?=.{{1,{GROUP_NAME_MAX}}}\Z)[A-Za-z0-9]+(?: [A-Za-z0-9]+)*\Z")
GROUP_NAME_RULE = f"letters, digits and single spaces between words, at most {GROUP_NAME_MAX} characters"


def is_group_name(name: str) -> bool:
    return GROUP_NAME_RE.match(name) is not None
