"""``gencourse.show(obj)``: the source of a function or class, highlighted, so a lesson shows the code it runs."""
import inspect
import textwrap


def show(obj) -> "object":
    """Display the source of ``obj`` (function, method, class or module) highlighted in a notebook.

    Outside a notebook the object returned prints as plain source.
    """
    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (TypeError, OSError) as err:
        raise ValueError(f"cannot show the source of {obj!r}: {err}. Pass a function, class or module.") from err
    return _Source(source)


class _Source:
    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return self.source

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(noclasses=True, style="default")
        return highlight(self.source, PythonLexer(), formatter)
