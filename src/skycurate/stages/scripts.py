"""Unicode script ranges shared by the text stages (web quality signals, language ID, CoT chain
checks), so that "what counts as a Han character" has one answer."""

from __future__ import annotations

import re

# CJK unified ideographs, extension A, compatibility ideographs, extensions B..H.
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN_RE = re.compile(f"[{HAN}]")
