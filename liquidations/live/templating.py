"""Compiled rendering of a pure-substitution partial (the live row, rendered per event).

Django's engine spends ~10 µs on each `{{ }}` that is not a plain string (localizing a
number) and ~3 µs on the others; `_row.html` has 15 of them per stored event. A template
made only of text and `{{ row.<name> }}` variables compiles to one `str.format` with the
same escaping instead. The template file stays the only source of the markup: what this
compiler does not handle (tags, filters, names the row class lacks) falls back to
Django's render, with a warning, and tests/test_templating.py compares both renders
byte for byte.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import logging
import operator
from collections.abc import Callable
from typing import cast

from django.conf import settings
from django.template import Context
from django.template.base import Node, Template, TextNode, VariableNode, render_value_in_context
from django.template.loader import get_template

logger = logging.getLogger(__name__)

# Joins a row's values for one escape() call: a control character no row value holds (a
# value that does hold it is caught by counting them, and escaped on its own instead).
_SEPARATOR = "\x00"


class NotCompilable(ValueError):
    """The template is more than text and `{{ var.<name> }}`; the message says where."""


def substitution_renderer(template_name: str, *, var: str, cls: type) -> Callable[[object], str]:
    """Return a function rendering the template for one `var` (an instance of cls).

    Compiled when the template is pure substitution of cls's fields and properties;
    otherwise Django's own render (slower, same output) and a warning in the log.
    """
    template = get_template(template_name)
    try:
        # The backend wrapper keeps the engine-level Template, which django-stubs omits.
        return compile_substitution(template.template, var=var, cls=cls)  # type: ignore[attr-defined]
    except NotCompilable as exc:
        logger.warning("%s renders through Django's engine (slower): %s", template_name, exc)
        return lambda obj: template.render({var: obj})


@functools.cache
def row_renderer(template_name: str, cls: type) -> Callable[[object], str]:
    """substitution_renderer for a row partial (`{{ row.<name> }}`), compiled once."""
    return substitution_renderer(template_name, var="row", cls=cls)


def compile_substitution(template: Template, *, var: str, cls: type) -> Callable[[object], str]:
    """Compile a django.template.base.Template of text and `{{ var.<name> }}` nodes."""
    if not template.engine.autoescape:
        raise NotCompilable("the template engine does not autoescape")
    known = _attributes(cls)
    pieces: list[str] = []
    names: list[str] = []
    for node in template.nodelist:
        if isinstance(node, TextNode):
            pieces.append(node.s.replace("{", "{{").replace("}", "}}"))
        elif isinstance(node, VariableNode):
            names.append(_substituted_name(node, var=var, known=known))
            pieces.append("{}")
        else:
            raise NotCompilable(f"{_source(node)!r} is not a plain variable")
    fmt = "".join(pieces)
    if not names:
        return lambda obj: fmt
    # attrgetter of one name returns the value, of several a tuple: always ask for two.
    get = operator.attrgetter(names[0], *names)
    escape = html.escape
    separators = len(names) - 1

    def render(obj: object) -> str:
        values = get(obj)[1:]
        # Django's localize() of an int without grouping is str(), at ~10 µs.
        ints = not settings.USE_THOUSAND_SEPARATOR
        texts = [
            v if type(v) is str else str(v) if ints and type(v) is int else None for v in values
        ]
        if None not in texts:
            # Escape the row's strings at once (one call instead of one per value).
            joined = _SEPARATOR.join(cast(list[str], texts))
            if joined.count(_SEPARATOR) == separators:
                return fmt.format(*escape(joined).split(_SEPARATOR))
        return fmt.format(*[escape(v) if type(v) is str else _value(v) for v in values])

    return render


def _source(node: Node) -> str:
    """Return a node's text as written in the template (for messages)."""
    return node.token.contents if node.token is not None else type(node).__name__


def _attributes(cls: type) -> set[str]:
    fields = (
        {field.name for field in dataclasses.fields(cls)}
        if dataclasses.is_dataclass(cls)
        else set()
    )
    properties = {
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, property)
    }
    return fields | properties


def _substituted_name(node: VariableNode, *, var: str, known: set[str]) -> str:
    expression = node.filter_expression
    variable = expression.var
    lookups = getattr(variable, "lookups", None)
    text = _source(node)
    if expression.filters:
        raise NotCompilable(f"{{{{ {text} }}}} has a filter")
    if not lookups or len(lookups) != 2 or lookups[0] != var or variable.translate:
        raise NotCompilable(f"{{{{ {text} }}}} is not {var}.<name>")
    if lookups[1] not in known:
        # Django would render "" (string_if_invalid) or call a method: not substitution.
        raise NotCompilable(f"{{{{ {text} }}}}: no field or property {lookups[1]!r}")
    return lookups[1]


def _value(value: object) -> str:
    """Return a value that is not a plain str as Django's autoescaping `{{ }}` shows it.

    (A plain str is html.escape()d, as Django does; a SafeString is not a plain str.)
    """
    if type(value) is int and not settings.USE_THOUSAND_SEPARATOR:
        return str(value)
    return render_value_in_context(value, Context())
