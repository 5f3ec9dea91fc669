"""Safe template languages (no eval, no I/O, no clock): target paths and acquisition listings.

- ``directory``: the dissemination Host Directory field -> the remote path of a transfer.
- ``listing``: acquisition listing lines, size/age filters, target and metadata templates.
- ``dates``: Java ``SimpleDateFormat`` patterns; ``lexer``: the shared tokenizer and
  ``TemplateError`` (a ``ConfigurationError`` carrying line and column).
"""

from bus.templates.context import RenderContext
from bus.templates.lexer import TemplateError

__all__ = ["RenderContext", "TemplateError"]
