"""The one lock every view of the glass box shares (a GPT, a translation model, the
leaf/flower network).

The glass box keeps one switch for "record gradients" for the whole process
(chalklm.scratch.no_grad), so two requests using it at once could turn it back on under
each other: every use of it in the explain server takes turns behind GLASS_LOCK.
"""

import threading

GLASS_LOCK = threading.Lock()
