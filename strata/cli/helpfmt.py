"""``--help`` in the conventional shape: ``--json`` (not ``--json <bool>``), ``SOURCE``,
``--params <str>`` (not ``<list[str]>``).

Typer 0.29 labels every option with its Python type, flags included, and writes a required
argument as ``{source}`` in the usage line. Both read as syntax to type; this shows flags
bare and arguments in capitals (``[NAME]`` when optional), as click and most tools do. Applied
once by ``strata.cli.main``; a Typer without these hooks is left as it is.
"""

from __future__ import annotations

from typing import Any


def conventional_help() -> None:
    from typer import core

    argument: Any = getattr(core, "TyperArgument", None)
    option: Any = getattr(core, "TyperOption", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.display_name_raw).upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        def table_name(self: Any) -> str:
            name = str(self.display_name_raw).upper()
            return name + ("..." if self.metavar is None and self.nargs != 1 else "")

        argument._usage_display_name = usage_name
        if hasattr(argument, "_rich_display_name"):
            argument._rich_display_name = table_name
    if option is not None and hasattr(option, "display_type_rich"):
        typed = option.display_type_rich

        def type_label(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            label: str | None = typed(self, ctx)
            # A repeatable option reads as its element (`--params <str>`, not `<list[str]>`):
            # the help text says "repeat".
            if isinstance(label, str) and label.startswith("<list[") and label.endswith("]>"):
                return "<" + label[len("<list[") : -len("]>")] + ">"
            return label

        option.display_type_rich = type_label
